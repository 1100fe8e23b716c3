"""Streaming detokenization with the real Qwen2.5 tokenizer (our default model's)."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from model.engine.detokenize import IncrementalDetokenizer

RARE_CHINESE = "龘靐𪚥是生僻字。知识库回答问题。"


@pytest.fixture(scope="module")
def tokenizer(models_dir: Path):
    return AutoTokenizer.from_pretrained(models_dir / "tokenizers" / "qwen-2.5")


def _stream(tokenizer, text: str, stop: tuple[str, ...] = ()) -> tuple[list[str], IncrementalDetokenizer]:
    prompt_ids = tokenizer.encode("用户问题：", add_special_tokens=False)
    detokenizer = IncrementalDetokenizer(tokenizer, prompt_ids, stop)
    deltas = [detokenizer.push(i) for i in tokenizer.encode(text, add_special_tokens=False)]
    return [*deltas, detokenizer.flush()], detokenizer


def test_chinese_characters_split_over_tokens_are_never_emitted_in_pieces(tokenizer) -> None:
    ids = tokenizer.encode(RARE_CHINESE, add_special_tokens=False)
    # The test only means something if some token ends mid-character.
    assert any("\ufffd" in tokenizer.decode([i]) for i in ids)
    deltas, _ = _stream(tokenizer, RARE_CHINESE)
    assert all("\ufffd" not in d for d in deltas)
    assert "".join(deltas) == RARE_CHINESE


def test_english_spacing_survives_token_by_token_decoding(tokenizer) -> None:
    text = " The capital of France is Paris, isn't it?\n- yes"
    deltas, _ = _stream(tokenizer, text)
    assert "".join(deltas) == text


def test_stop_string_spanning_tokens_ends_output_before_it(tokenizer) -> None:
    text = "The answer is 42.\nEND of story, more text"
    assert len(tokenizer.encode("\nEND", add_special_tokens=False)) > 1
    deltas, detokenizer = _stream(tokenizer, text, stop=("\nEND",))
    assert "".join(deltas) == "The answer is 42."
    assert detokenizer.is_stopped


def test_earliest_of_several_stop_strings_wins(tokenizer) -> None:
    deltas, _ = _stream(tokenizer, "答案是巴黎。参考资料：[1]", stop=("[1]", "。"))
    assert "".join(deltas) == "答案是巴黎"


def test_held_back_stop_prefix_is_released_when_it_does_not_complete(tokenizer) -> None:
    deltas, detokenizer = _stream(tokenizer, "line one\nENDURANCE\nEN", stop=("\nEND\n",))
    assert "".join(deltas) == "line one\nENDURANCE\nEN"
    assert not detokenizer.is_stopped
