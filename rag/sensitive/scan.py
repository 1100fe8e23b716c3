"""`detect`: every built-in detector plus an optional admin term list, overlaps resolved."""

from __future__ import annotations

from collections.abc import Callable

from rag.sensitive.cards import detect_bank_card, detect_iban
from rag.sensitive.cn_ids import detect_cn_id, detect_cn_passport, detect_cn_plate, detect_uscc
from rag.sensitive.contact import (detect_cn_landline, detect_cn_mobile, detect_email,
                                   detect_ipv4, detect_ipv6)
from rag.sensitive.finding import Finding, resolve_overlaps
from rag.sensitive.markings import detect_marking
from rag.sensitive.secrets import (detect_api_key, detect_high_entropy, detect_password,
                                   detect_private_key)
from rag.sensitive.terms import TermMatcher

Detector = Callable[[str], list[Finding]]

BUILTIN_DETECTORS: tuple[Detector, ...] = (
    detect_cn_id, detect_uscc, detect_cn_passport, detect_cn_plate,
    detect_cn_mobile, detect_cn_landline, detect_email, detect_ipv4, detect_ipv6,
    detect_bank_card, detect_iban,
    detect_api_key, detect_private_key, detect_password, detect_high_entropy,
    detect_marking,
)


def detect(text: str, *, terms: TermMatcher | None = None) -> list[Finding]:
    """All sensitive spans in `text`, non-overlapping, sorted by start (see `resolve_overlaps`)."""
    findings = [finding for detector in BUILTIN_DETECTORS for finding in detector(text)]
    if terms is not None:
        findings.extend(terms.find(text))
    return resolve_overlaps(findings)
