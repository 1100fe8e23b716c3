"""Sensitive-content protection: detectors, policies and a streaming guard (docs/sensitive.md)."""

from rag.sensitive.finding import Finding, resolve_overlaps
from rag.sensitive.policy import Action, ActionTaken, Policy, Redaction, apply_policy
from rag.sensitive.protection import Protection
from rag.sensitive.scan import BUILTIN_DETECTORS, detect
from rag.sensitive.stream import DEFAULT_HOLD_BACK_CHARS, StreamGuard, hold_back_chars_for
from rag.sensitive.terms import Term, TermListError, TermMatcher

__all__ = [
    "Action", "ActionTaken", "BUILTIN_DETECTORS", "DEFAULT_HOLD_BACK_CHARS", "Finding", "Policy",
    "Protection", "Redaction", "StreamGuard", "Term", "TermListError", "TermMatcher", "apply_policy", "detect",
    "hold_back_chars_for", "resolve_overlaps",
]
