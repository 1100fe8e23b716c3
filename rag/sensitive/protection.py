"""A policy bound to a detector: what ingest applies to chunks and answering to questions, sources and
the streamed answer."""

from __future__ import annotations

from dataclasses import dataclass

from rag.sensitive.finding import Finding
from rag.sensitive.policy import Policy, Redaction, apply_policy
from rag.sensitive.scan import detect
from rag.sensitive.stream import StreamGuard, hold_back_chars_for
from rag.sensitive.terms import TermMatcher


@dataclass(frozen=True)
class Protection:
    policy: Policy
    terms: TermMatcher | None = None  # the admin's term list, if any

    def detect(self, text: str) -> list[Finding]:
        return detect(text, terms=self.terms)

    def apply(self, text: str) -> tuple[list[Finding], Redaction]:
        findings = self.detect(text)
        return findings, apply_policy(text, findings, self.policy)

    def stream_guard(self) -> StreamGuard:
        return StreamGuard(self.policy, self.detect, hold_back_chars=hold_back_chars_for(self.terms))
