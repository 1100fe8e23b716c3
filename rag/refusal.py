"""Telling the refusal sentence from an answer, and keeping it off the end of a full answer."""

from __future__ import annotations

import re
from dataclasses import dataclass

from rag.prompt import REFUSAL_EN, REFUSAL_ZH

# Letters (CJK or Latin) a reply may hold besides the refusal sentence and still be a refusal
# ("根据资料，资料中没有找到答案。", "Sorry, the documents do not contain the answer.").
REFUSAL_MAX_OTHER_LETTERS = 12
_SENTENCES = tuple(sentence.lower() for sentence in (REFUSAL_ZH, REFUSAL_EN))


def is_refusal(answer: str) -> bool:
    """The reply is the refusal sentence, not an answer that also says it: the 1.5B model sometimes
    ends a full, cited answer with the sentence (tests/e2e/test_cli.py saw it)."""
    text = answer.lower()
    rest = text.replace(REFUSAL_ZH.rstrip("。"), "").replace(REFUSAL_EN.rstrip(".").lower(), "")
    return rest != text and len(re.sub(r"[\W\d_]+", "", rest)) <= REFUSAL_MAX_OTHER_LETTERS


def _open_refusal_len(text: str) -> int:
    """Length of the longest end of `text` that starts (or is) a refusal sentence."""
    lowered = text.lower()
    for size in range(min(len(lowered), max(map(len, _SENTENCES))), 0, -1):
        if any(sentence.startswith(lowered[-size:]) for sentence in _SENTENCES):
            return size
    return 0


@dataclass
class TrailingRefusalGuard:
    """Streams answer text but holds back what may be the refusal sentence at its end (at most one
    sentence's length). When the answer ends with the whole sentence after a real answer, the
    sentence is dropped: it would contradict the answer shown above it. A reply that is only the
    refusal (or an answer that goes on after the sentence) is released unchanged."""

    held: str = ""

    def feed(self, text: str) -> str:
        pending = self.held + text
        keep = _open_refusal_len(pending)
        self.held = pending[len(pending) - keep:]
        return pending[: len(pending) - keep]

    def flush(self, released: str) -> str:
        """The held text at the end of the reply, given all text `released` before it."""
        held, self.held = self.held, ""
        if held.strip().lower() in _SENTENCES and not is_refusal(released + held):
            return ""
        return held
