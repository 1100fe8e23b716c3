"""The one record every detector returns, and the rule that resolves overlapping findings."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Literal

Severity = Literal["low", "medium", "high"]

# Tie-break when two findings overlap with equal confidence: the more specific, more harmful kind
# wins. Kinds missing here (none today) sort last.
KIND_PRIORITY: tuple[str, ...] = (
    "PRIVATE_KEY", "API_KEY", "PASSWORD", "CN_ID", "USCC", "BANK_CARD", "IBAN", "EMAIL",
    "CN_MOBILE", "CN_LANDLINE", "IPV6", "IPV4", "CN_PASSPORT", "CN_PLATE", "TERM", "MARKING",
    "SECRET",
)
_PRIORITY_RANK = {kind: rank for rank, kind in enumerate(KIND_PRIORITY)}


@dataclass(frozen=True, slots=True)
class Finding:
    """A sensitive span: `text[start:end]` (Python string offsets) holds a value of `kind`.

    `confidence` is a fixed per-rule value (1.0 for checksum-verified shapes, lower for shapes
    without a checksum); `category`/`severity` are set for admin-listed TERM findings only.
    """

    kind: str
    start: int
    end: int
    text: str
    confidence: float
    category: str | None = None
    severity: Severity | None = None


def resolve_overlaps(findings: list[Finding]) -> list[Finding]:
    """Keep a set of non-overlapping findings, chosen greedily and deterministically.

    Order of preference: higher confidence, then KIND_PRIORITY, then the longer span, then the
    earlier start. So an 18-digit number whose resident-ID checksum passes (1.0) beats the same
    span read as a Luhn-valid bank card (0.9), and a card beats a 15-digit legacy ID (no checksum).
    """
    ranked = sorted(
        findings,
        key=lambda f: (-f.confidence, _PRIORITY_RANK.get(f.kind, len(KIND_PRIORITY)),
                       -(f.end - f.start), f.start, f.kind),
    )
    # Kept spans never overlap, so sorted by start they are also sorted by end: a new span only
    # has to be checked against its two neighbours (bisect keeps this O(n log n) on big texts).
    kept_starts: list[int] = []
    kept: list[Finding] = []
    for finding in ranked:
        index = bisect.bisect_right(kept_starts, finding.start)
        if index > 0 and kept[index - 1].end > finding.start:
            continue
        if index < len(kept) and kept[index].start < finding.end:
            continue
        kept_starts.insert(index, finding.start)
        kept.insert(index, finding)
    return kept
