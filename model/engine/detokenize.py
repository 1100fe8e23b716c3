"""Token ids → text, one step at a time, for streaming.

Byte-level BPE tokens can end in the middle of a UTF-8 character (a Chinese character is often
split over two or three tokens); decoding such a prefix yields U+FFFD. We therefore decode a short
window of recent ids and release text only once it no longer ends in U+FFFD, as vLLM and
transformers' TextStreamer do. Stop strings are matched on the released text: anything that could
still grow into a stop string is held back, and the stop string itself is never emitted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

REPLACEMENT_CHAR = "\ufffd"

# Decoding the first output token alone loses context some tokenizers need (sentencepiece drops a
# leading space), so the window starts with this many prompt tokens whose text is never emitted.
NUM_CONTEXT_TOKENS = 4


@dataclass
class IncrementalDetokenizer:
    """Turns a growing list of output ids into text deltas for one sequence.

    `ids` holds a few prompt ids followed by the output ids; text between `prefix_offset` and
    `read_offset` has been released already and serves as the decoding context of the next ids.
    """

    tokenizer: object
    prompt_ids: Sequence[int]
    stop: tuple[str, ...] = ()
    ids: list[int] = field(init=False)
    prefix_offset: int = field(init=False, default=0)
    read_offset: int = field(init=False)
    pending: str = field(init=False, default="")
    is_stopped: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self.ids = list(self.prompt_ids[-NUM_CONTEXT_TOKENS:])
        self.read_offset = len(self.ids)

    def push(self, token_id: int) -> str:
        """Adds one output id; returns the text that is now safe to show (maybe empty)."""
        if self.is_stopped:
            return ""
        self.ids.append(token_id)
        prefix_text = self._decode(self.ids[self.prefix_offset : self.read_offset])
        full_text = self._decode(self.ids[self.prefix_offset :])
        if len(full_text) <= len(prefix_text) or full_text.endswith(REPLACEMENT_CHAR):
            return ""
        self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
        return self._release(full_text[len(prefix_text) :])

    def flush(self) -> str:
        """Text still held at the end of generation (a stop-string prefix that never completed)."""
        if self.is_stopped:
            return ""
        tail = self._decode(self.ids[self.prefix_offset :])[
            len(self._decode(self.ids[self.prefix_offset : self.read_offset])) :
        ]
        text, self.pending = self.pending + tail, ""
        cut = find_stop(text, self.stop)
        return text if cut is None else text[:cut]

    def _decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _release(self, new_text: str) -> str:
        if not self.stop:
            return new_text
        text = self.pending + new_text
        cut = find_stop(text, self.stop)
        if cut is not None:
            self.is_stopped, self.pending = True, ""
            return text[:cut]
        held = longest_stop_prefix_suffix(text, self.stop)
        self.pending = text[len(text) - held :] if held else ""
        return text[: len(text) - held]


def find_stop(text: str, stop: Sequence[str]) -> int | None:
    """Index where the earliest stop string starts in text, or None."""
    starts = [i for i in (text.find(s) for s in stop) if i >= 0]
    return min(starts) if starts else None


def longest_stop_prefix_suffix(text: str, stop: Sequence[str]) -> int:
    """Length of the longest suffix of text that is a proper prefix of some stop string."""
    best = 0
    for s in stop:
        for n in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:n]):
                best = n
                break
    return best
