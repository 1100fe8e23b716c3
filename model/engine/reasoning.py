"""Split R1-style output into reasoning and answer, as DeepSeek's API does (`reasoning_content`).

R1's chat template ends the prompt with `<think>\\n`, so generation starts *inside* the reasoning
and only `</think>` appears in the output. Other models may open with `<think>` themselves; that
tag is recognised only before any answer text, so a literal "<think>" later in an answer stays text.
Tags may arrive split over several text deltas: a partial tag is held back until it resolves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

OPEN_TAG = "<think>"
CLOSE_TAG = "</think>"

# Enough trailing prompt tokens to contain the template's "<think>\n" in any tokenizer.
NUM_TAIL_TOKENS = 4


def prompt_opens_reasoning(tokenizer, prompt_ids: Sequence[int]) -> bool:
    """True when the prompt ends with an open `<think>`: the model's output begins as reasoning."""
    tail = tokenizer.decode(list(prompt_ids[-NUM_TAIL_TOKENS:]), skip_special_tokens=False)
    return tail.rstrip().endswith(OPEN_TAG)


@dataclass
class ReasoningSplitter:
    """Feeds text deltas in; gets (reasoning, content) deltas out."""

    is_reasoning: bool = False
    # An opening tag counts only before any answer text and before a reasoning block has closed.
    may_open: bool = True
    # Answers after `</think>` start with blank lines in R1; DeepSeek's API strips them.
    strip_leading: bool = False
    held: str = ""

    def feed(self, text: str) -> tuple[str, str]:
        text, self.held = self.held + text, ""
        reasoning, content = "", ""
        while text:
            if self.is_reasoning:
                index = text.find(CLOSE_TAG)
                if index < 0:
                    num_held = _partial_tag_suffix(text, CLOSE_TAG)
                    reasoning += text[: len(text) - num_held]
                    self.held = text[len(text) - num_held :]
                    break
                reasoning += text[:index]
                text = text[index + len(CLOSE_TAG) :]
                self.is_reasoning, self.may_open, self.strip_leading = False, False, True
            elif self.may_open and text.lstrip().startswith(OPEN_TAG):
                text = text.lstrip()[len(OPEN_TAG) :]
                self.is_reasoning = True
            elif self.may_open and OPEN_TAG.startswith(text.lstrip()):
                self.held = text
                break
            else:
                content += self._content(text)
                break
        return reasoning, content

    def flush(self) -> tuple[str, str]:
        """Whatever is still held when generation ends."""
        held, self.held = self.held, ""
        if self.is_reasoning:
            return held, ""
        return "", self._content(held)

    def _content(self, text: str) -> str:
        if self.strip_leading:
            text = text.lstrip()
            self.strip_leading = not text
        if text:
            self.may_open = False
        return text


def _partial_tag_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of text that is a proper prefix of tag."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0
