"""Contact details: Chinese mobile and landline numbers, email, IPv4, IPv6."""

from __future__ import annotations

import ipaddress
import re

from rag.sensitive.boundaries import follows_digit_group, is_ascii_alnum
from rag.sensitive.finding import Finding

# 1[3-9]x xxxx xxxx with single spaces or dashes between groups; an optional +86 / 0086 / (+86)
# just before it is taken into the span. Digit boundaries keep it from firing inside longer runs
# (timestamps, order numbers) or a grouped card number (left side: boundaries.py).
_MOBILE_RE = re.compile(r"1[3-9]\d[ -]?\d{4}[ -]?\d{4}(?![0-9])(?![ -][0-9])")
_COUNTRY_CODE_RE = re.compile(r"(?:\(\+86\)|\+86|0086)[ -]?$")
MAX_COUNTRY_CODE_CHARS = 6  # "(+86) "
# Area code 0 + 2-3 digits (optionally in parentheses, or after +86 with the 0 dropped), then a
# 7-8 digit local number that starts with 2-8 (0/1 never start a local number), then an optional
# extension. The area code is required: a bare 8-digit number is too ambiguous.
# Written as a flat alternation whose branches start with a literal, so `re` can skip ahead.
_LANDLINE_LOCAL = r"[ -]?[2-8]\d{2,3}[ -]?\d{4}(?:(?:-|转|ext\.? ?)\d{1,5})?(?![0-9])(?![ -][0-9])"
_LANDLINE_RE = re.compile("|".join(
    area_code + _LANDLINE_LOCAL
    for area_code in (r"\+86[ -]?\(?[1-9]\d{1,2}\)?", r"0086[ -]?\(?[1-9]\d{1,2}\)?",
                      r"\(0[1-9]\d{1,2}\)", r"0[1-9]\d{1,2}")))
# Found from each "@" (a fast literal scan) rather than from the local part's first letter:
# bounded quantifiers keep both halves linear.
_EMAIL_DOMAIN_RE = re.compile(
    r"@((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.){1,8}[A-Za-z]{2,24})(?![A-Za-z0-9-])")
_EMAIL_LOCAL_RE = re.compile(r"[A-Za-z0-9._%+-]{1,64}$")
_IPV4_RE = re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?![0-9]|\.[0-9])")
# A loose candidate found from its first colon (ASCII colons are rare in prose, so `re` skips
# ahead fast): the run of hex digits, colons and dots after it (45 = longest IPv6 text form,
# with an IPv4 tail), the up to 4 hex digits before it; confirmed by `ipaddress`.
_IPV6_TAIL_RE = re.compile(r":[0-9A-Fa-f:.]{1,44}(?![0-9A-Za-z:])")
_IPV6_HEAD_RE = re.compile(r"[0-9A-Fa-f]{1,4}$")


def detect_cn_mobile(text: str) -> list[Finding]:
    findings = []
    for match in _MOBILE_RE.finditer(text):
        start = match.start()
        country_code = _COUNTRY_CODE_RE.search(text, max(0, start - MAX_COUNTRY_CODE_CHARS), start)
        if country_code is not None:
            start = country_code.start()
        elif follows_digit_group(text, start):
            continue
        findings.append(Finding("CN_MOBILE", start, match.end(), text[start:match.end()], 0.95))
    return findings


def detect_cn_landline(text: str) -> list[Finding]:
    return [Finding("CN_LANDLINE", m.start(), m.end(), m.group(), 0.8)
            for m in _LANDLINE_RE.finditer(text) if not follows_digit_group(text, m.start())]


def detect_email(text: str) -> list[Finding]:
    findings = []
    for match in _EMAIL_DOMAIN_RE.finditer(text):
        local = _EMAIL_LOCAL_RE.search(text, max(0, match.start() - 64), match.start())
        if local is None:
            continue
        # The local part starts with a letter or digit ("..a@b.cn" keeps "a").
        start = local.start() + len(local.group()) - len(local.group().lstrip("._%+-"))
        if start < match.start():
            findings.append(Finding("EMAIL", start, match.end(), text[start:match.end()], 0.99))
    return findings


def detect_ipv4(text: str) -> list[Finding]:
    findings = []
    for match in _IPV4_RE.finditer(text):
        start = match.start()
        if start > 0 and (text[start - 1] == "." or text[start - 1].isdigit()):
            continue
        octets = match.group().split(".")
        if all(int(octet) <= 255 and (octet == "0" or not octet.startswith("0")) for octet in octets):
            findings.append(Finding("IPV4", start, match.end(), match.group(), 0.9))
    return findings


def detect_ipv6(text: str) -> list[Finding]:
    findings = []
    for match in _IPV6_TAIL_RE.finditer(text):
        head = _IPV6_HEAD_RE.search(text, max(0, match.start() - 4), match.start())
        start = match.start() if head is None else head.start()
        if start > 0 and (is_ascii_alnum(text[start - 1]) or text[start - 1] in ":."):
            continue
        candidate = text[start:match.end()].rstrip(".")  # a sentence may end after the address
        if candidate.count(":") < 2 or len(candidate) < 3:  # "::" alone is no address worth a flag
            continue
        try:
            ipaddress.IPv6Address(candidate)
        except ValueError:
            continue
        findings.append(Finding("IPV6", start, start + len(candidate), candidate, 0.9))
    return findings
