"""Confidentiality markings (kind MARKING): 绝密/机密/秘密 classification stamps, 内部 notices,
and their English equivalents.

The bare words are common in ordinary prose ("商业秘密", "公司内部", "a confidential tone"), so
Chinese grades count only in the forms documents are stamped with: followed by ★/▲ (GB/T 9704
"密级★保密期限"), inside brackets, after 密级, or as a short line of their own.
"""

from __future__ import annotations

import re

from rag.sensitive.boundaries import follows_ascii_alnum
from rag.sensitive.casing import fold_case
from rag.sensitive.finding import Finding, resolve_overlaps

# Flat alternations whose branches each start with a literal (or one character class), so `re`
# can skip ahead to those characters (see boundaries.py).
_STAMP = r"(?:\s{0,2}[★▲☆](?:\s{0,2}\d{1,2}\s{0,2}年)?|(?=[ \t]*(?:\r?\n|$)))"
_CHINESE_MARKING_RE = re.compile(
    r"密级\s{0,2}[:：]\s{0,2}(?:绝密|机密|秘密|内部)"
    rf"|绝密{_STAMP}|机密{_STAMP}|秘密{_STAMP}"
    r"|内部资料|内部文件|内部使用|内部★|仅限内部(?:使用|传阅|参考)?|注意保密|严禁外传")
_BRACKETED_MARKING_RE = re.compile(
    r"[【\[〔(（「](?:绝密|机密|秘密|内部|内部资料|内部文件|内部使用|仅限内部使用?)[】\]〕)）」]")
# Matched on the case-folded text, one pattern per leading literal: `re` finds a literal prefix
# with a fast substring search, while an alternation of words is tried at every letter.
_ENGLISH_MARKING_RES = (
    re.compile(r"strictly\s+confidential(?![a-z])"),
    re.compile(r"confidential(?![a-z])"),
    re.compile(r"top\s+secret(?![a-z])"),
    re.compile(r"for\s+internal\s+(?:use\s+)?only(?![a-z])"),
    re.compile(r"internal\s+(?:use\s+)?only(?![a-z])"),
    re.compile(r"do\s+not\s+distribute(?![a-z])"),
)


def _is_stamp_line(text: str, start: int) -> bool:
    """A bare 绝密/机密/秘密 counts only at the start of a line (after optional indentation)."""
    line_start = text.rfind("\n", 0, start) + 1
    return text[line_start:start].strip(" \t") == ""


def detect_marking(text: str) -> list[Finding]:
    findings = []
    for match in _CHINESE_MARKING_RE.finditer(text):
        is_bare_grade = match.group() in ("绝密", "机密", "秘密")
        if not is_bare_grade or _is_stamp_line(text, match.start()):
            findings.append(Finding("MARKING", match.start(), match.end(), match.group(), 0.9))
    findings.extend(Finding("MARKING", m.start(), m.end(), m.group(), 0.9)
                    for m in _BRACKETED_MARKING_RE.finditer(text))
    folded = fold_case(text)
    for pattern in _ENGLISH_MARKING_RES:
        findings.extend(Finding("MARKING", m.start(), m.end(), text[m.start():m.end()], 0.9)
                        for m in pattern.finditer(folded) if not follows_ascii_alnum(text, m.start()))
    # "strictly confidential" also holds "confidential": keep the longest of nested matches.
    return resolve_overlaps(findings)
