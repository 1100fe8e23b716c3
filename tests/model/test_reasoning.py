"""R1-style reasoning split, with the real DeepSeek-R1 tokenizer and chat template."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from model.engine.detokenize import IncrementalDetokenizer
from model.engine.reasoning import ReasoningSplitter, prompt_opens_reasoning

MESSAGES = [{"role": "user", "content": "1+1 等于几？"}]


@pytest.fixture(scope="module")
def r1_tokenizer(models_dir: Path):
    return AutoTokenizer.from_pretrained(models_dir / "tokenizers" / "deepseek-r1")


def _r1_prompt_ids(tokenizer) -> list[int]:
    text = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    return tokenizer.encode(text, add_special_tokens=False)


def _split(splitter: ReasoningSplitter, deltas: list[str]) -> tuple[str, str]:
    parts = [splitter.feed(d) for d in deltas] + [splitter.flush()]
    return "".join(r for r, _ in parts), "".join(c for _, c in parts)


def test_r1_template_opens_the_reasoning_in_the_prompt(r1_tokenizer) -> None:
    text = r1_tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    assert text.endswith("<｜Assistant｜><think>\n")
    assert prompt_opens_reasoning(r1_tokenizer, _r1_prompt_ids(r1_tokenizer))


def test_prompt_without_think_does_not_open_reasoning(models_dir: Path) -> None:
    qwen = AutoTokenizer.from_pretrained(models_dir / "tokenizers" / "qwen-2.5")
    text = qwen.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    assert not prompt_opens_reasoning(qwen, qwen.encode(text, add_special_tokens=False))


def test_r1_output_streamed_token_by_token_splits_at_the_close_tag(r1_tokenizer) -> None:
    output = "嗯，用户问1+1。答案是2。\n</think>\n\n1+1 等于 **2**。"
    prompt_ids = _r1_prompt_ids(r1_tokenizer)
    detokenizer = IncrementalDetokenizer(r1_tokenizer, prompt_ids)
    splitter = ReasoningSplitter(is_reasoning=prompt_opens_reasoning(r1_tokenizer, prompt_ids))
    deltas = [detokenizer.push(i) for i in r1_tokenizer.encode(output, add_special_tokens=False)]
    reasoning, content = _split(splitter, [*deltas, detokenizer.flush()])
    assert reasoning == "嗯，用户问1+1。答案是2。\n"
    assert content == "1+1 等于 **2**。"


def test_tags_split_across_deltas_are_recognised() -> None:
    deltas = ["Let me th", "ink.</th", "ink", ">\n\nThe answer", " is 4."]
    assert _split(ReasoningSplitter(is_reasoning=True), deltas) == ("Let me think.", "The answer is 4.")


def test_model_that_opens_its_own_think_block() -> None:
    deltas = ["\n<thi", "nk>plan", "</think>", "done"]
    assert _split(ReasoningSplitter(), deltas) == ("plan", "done")


def test_output_without_tags_is_all_answer() -> None:
    deltas = ["<b>Paris</b>", " is the capital."]
    assert _split(ReasoningSplitter(), deltas) == ("", "<b>Paris</b> is the capital.")


def test_think_tag_inside_an_answer_stays_text() -> None:
    deltas = ["Use the ", "<think>", " tag."]
    assert _split(ReasoningSplitter(), deltas) == ("", "Use the <think> tag.")


def test_unfinished_reasoning_stays_reasoning() -> None:
    splitter = ReasoningSplitter(is_reasoning=True)
    assert _split(splitter, ["still thinking </thi"]) == ("still thinking </thi", "")
