"""Guarding a streamed answer: text leaves only once no finding can still grow into it.

`StreamGuard.feed(delta)` returns the text that is safe to show now (with the policy applied);
`flush()` returns the rest when the stream ends. The guard holds back the last
`hold_back_chars` characters, plus any finding that reaches into them, so a value split across
deltas ("1101011990" + "03071234") is seen whole before any of it is released.

Why DEFAULT_HOLD_BACK_CHARS = 64. A value is safe if, by the time its first character would be
released, either the whole value plus one character of right context (the detectors' digit/word
lookaheads) has arrived, or a prefix of it is already a finding (then the cut moves to its
start and waits). Longest built-in values that are *not* flagged before they are complete:
  IPv6 text form with IPv4 tail      45   (+1 right context)
  IBAN in print form (34 + 8 spaces) 42
  bank card, 19 digits + separators  23 (typical), 37 (a separator between every digit)
  landline with +86 and extension    27
  CN_ID typed 6-8-4 with spaces      20
  marking "for internal use only"    21
  email                              unbounded in principle; 64 covers 63-character addresses
Tokens with a fixed prefix (sk-, ghp_, github_pat_, eyJ JWTs, PEM "-----BEGIN") and passwords
after a label are flagged from their first characters, so their full length does not count.
An admin term list adds its longest term (+1): use `hold_back_chars_for(terms)`.
Known limit: an email longer than the window can leak its first characters (the rest of it,
still held, is redacted because detection keeps the released tail as left context).
"""

from __future__ import annotations

from collections.abc import Callable

from rag.sensitive.finding import Finding
from rag.sensitive.policy import Action, ActionTaken, Policy, apply_policy
from rag.sensitive.scan import detect
from rag.sensitive.terms import TermMatcher

DEFAULT_HOLD_BACK_CHARS = 64


def hold_back_chars_for(terms: TermMatcher | None) -> int:
    if terms is None:
        return DEFAULT_HOLD_BACK_CHARS
    return max(DEFAULT_HOLD_BACK_CHARS, terms.max_term_chars + 1)


class StreamGuard:
    """One guard per streamed answer. After `blocked` turns True nothing more is released: the
    caller replaces the answer with its refusal message."""

    def __init__(self, policy: Policy, detect_fn: Callable[[str], list[Finding]] = detect,
                 hold_back_chars: int = DEFAULT_HOLD_BACK_CHARS):
        if hold_back_chars < 1:
            raise ValueError(f"hold_back_chars must be >= 1, got {hold_back_chars}")
        self.policy = policy
        self.detect_fn = detect_fn
        self.hold_back_chars = hold_back_chars
        self.blocked = False
        self.actions_taken: list[ActionTaken] = []
        self._released_tail = ""  # raw text already released, kept as left context for detection
        self._num_released_chars = 0  # raw characters released so far (audit offsets)
        self._pending = ""

    def feed(self, delta: str) -> str:
        self._pending += delta
        return self._release(is_final=False)

    def flush(self) -> str:
        return self._release(is_final=True)

    def _release(self, is_final: bool) -> str:
        if self.blocked:
            return ""
        window = self._released_tail + self._pending
        context_chars = len(self._released_tail)
        live = [f for f in self.detect_fn(window) if f.end > context_chars]
        if any(self.policy.action_for(f) is Action.BLOCK for f in live):
            self.blocked = True
            self._pending = ""
            return ""
        cut = len(window) if is_final else max(context_chars, len(window) - self.hold_back_chars)
        for finding in live:  # findings never overlap: at most one straddles the cut
            if finding.start < cut < finding.end:
                cut = max(context_chars, finding.start)
        released_raw = window[context_chars:cut]
        # A finding that began in the released tail (only possible for values longer than the
        # window) still gets its unreleased part redacted.
        in_release = [
            Finding(f.kind, max(f.start, context_chars) - context_chars, f.end - context_chars,
                    window[max(f.start, context_chars):f.end], f.confidence, f.category,
                    f.severity)
            for f in live if f.start < cut]
        redaction = apply_policy(released_raw, in_release, self.policy)
        self.actions_taken.extend(
            ActionTaken(t.kind, t.action, t.start + self._num_released_chars,
                        t.end + self._num_released_chars, t.category)
            for t in redaction.actions_taken)
        self._num_released_chars += len(released_raw)
        self._released_tail = window[:cut][-self.hold_back_chars:]
        self._pending = window[cut:]
        return redaction.text
