"""The refusal sentence: told apart from an answer, and kept off the end of a streamed full answer."""

from __future__ import annotations

import pytest

from rag.prompt import REFUSAL_EN, REFUSAL_ZH
from rag.refusal import TrailingRefusalGuard, is_refusal

# Seen from the default model: the full backup answer, then the sentence (tests/e2e/test_cli.py).
FULL_ANSWER = "1. 先停止知库（按 Ctrl-C）。\n2. 复制整个数据目录，例如 tar czf backup.tar.gz data/ [1]。"


def streamed(text: str, piece: int) -> tuple[str, list[str]]:
    """What the guard shows of `text` arriving in pieces of `piece` characters, and each piece shown."""
    guard = TrailingRefusalGuard()
    shown = [guard.feed(text[i:i + piece]) for i in range(0, len(text), piece)]
    shown.append(guard.flush("".join(shown)))
    return "".join(shown), shown


def test_a_reply_is_a_refusal_only_when_it_says_nothing_else():
    assert is_refusal(REFUSAL_ZH) and is_refusal(REFUSAL_EN) and is_refusal(f"根据资料，{REFUSAL_ZH}")
    assert is_refusal(f"Sorry, {REFUSAL_EN.lower()} [1]")
    assert not is_refusal(f"{FULL_ANSWER}\n\n{REFUSAL_ZH}")
    assert not is_refusal("Backups are kept for seven days [1].")


@pytest.mark.parametrize("piece", [1, 3, 50])
def test_the_sentence_after_a_full_answer_is_not_shown(piece):
    shown, _ = streamed(f"{FULL_ANSWER}\n\n{REFUSAL_ZH}", piece)
    assert shown.strip() == FULL_ANSWER
    shown, _ = streamed(f"Backups are kept for seven days [1]. {REFUSAL_EN}", piece)
    assert shown.strip() == "Backups are kept for seven days [1]."


@pytest.mark.parametrize("piece", [1, 4])
def test_a_reply_that_is_only_the_refusal_is_shown_whole(piece):
    assert streamed(REFUSAL_ZH, piece)[0] == REFUSAL_ZH
    assert streamed(f"根据资料，{REFUSAL_ZH}", piece)[0] == f"根据资料，{REFUSAL_ZH}"
    assert streamed(REFUSAL_EN, piece)[0] == REFUSAL_EN


def test_text_that_only_looks_like_the_start_of_the_sentence_is_released():
    # An answer that goes on after the sentence, and one cut off mid-way by max_tokens: nothing lost.
    text = f"{REFUSAL_ZH}但第二份资料说备份保存七天 [2]。"
    assert streamed(text, 2)[0] == text
    assert streamed("备份保存七天 [1]。资料中", 2)[0] == "备份保存七天 [1]。资料中"


def test_the_guard_holds_back_no_more_than_a_sentence():
    # Streaming stays live: everything but a possible start of the sentence goes out at once.
    _, shown = streamed("备份每天凌晨两点运行 [1]。资料", 4)
    assert "".join(shown[:-1]) == "备份每天凌晨两点运行 [1]。"
    assert shown[-1] == "资料"
