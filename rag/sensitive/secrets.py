"""Credentials: API keys and tokens of well-known shapes, PEM private keys, passwords written
next to a password label, and high-entropy tokens (kind SECRET) that match no known shape."""

from __future__ import annotations

import math
import re
from collections import Counter

from rag.sensitive.boundaries import follows_ascii_alnum, follows_token_char
from rag.sensitive.casing import fold_case
from rag.sensitive.finding import Finding, resolve_overlaps

# Known token shapes, each starting with a literal so `re` skips ahead to it; the left boundary
# (no letter, digit, _ or - before) is checked in Python (boundaries.py). A long token is flagged
# as soon as its first characters arrive (what the stream guard's hold-back window relies on).
_API_KEY_RES = (
    re.compile(r"A(?:KI|SI)A[A-Z0-9]{16}(?![A-Za-z0-9])"),  # AWS access key id
    re.compile(r"gh[pousr]_[A-Za-z0-9]{30,255}"),  # GitHub classic tokens
    re.compile(r"github_pat_[A-Za-z0-9_]{20,255}"),  # GitHub fine-grained
    re.compile(r"sk-(?:proj-|svcacct-|admin-|ant-)?[A-Za-z0-9_-]{20,255}"),  # OpenAI-style
    re.compile(r"xox[abposr]-[A-Za-z0-9-]{10,255}"),  # Slack
    re.compile(r"AIza[0-9A-Za-z_-]{35}(?![A-Za-z0-9_-])"),  # Google API key
    # JWT: base64url('{"') = "eyJ" starts header and payload. Flagged from the header on, so a
    # token cut off mid-stream is still caught.
    re.compile(r"eyJ[A-Za-z0-9_-]{10,4096}(?:\.[A-Za-z0-9_-]{0,8192}){0,2}"),
    # AWS secret access key: 40 base64 characters, only recognisable by its label; the finding
    # is the capture group (every other pattern here has none).
    re.compile(r"(?:aws_secret_access_key|AWS_SECRET_ACCESS_KEY)[\"']?\s{0,3}[:=]\s{0,3}[\"']?"
               r"([A-Za-z0-9/+=]{40})"),
)
_PEM_BEGIN_RE = re.compile(r"-----BEGIN (?:[A-Z0-9]+ ){0,4}PRIVATE KEY(?: BLOCK)?-----")
_PEM_END_RE = re.compile(r"-----END (?:[A-Z0-9]+ ){0,4}PRIVATE KEY(?: BLOCK)?-----")
# A block cut off before its END line: the header and the base64 body that follows.
_PEM_BODY_RE = re.compile(r"[A-Za-z0-9+/=\s:,-]*")

# The value after a password label, up to whitespace or a closing quote/bracket. 128 bounds the
# scan; longer "passwords" are prose.
# Matched on the case-folded text (offsets are kept), one pattern per label so that each starts
# with a literal (`re` then skips ahead with a substring search). Password labels also take
# "is"/为/是 ("密码是123456"); generic labels (secret, token) only take ":" or "=", because
# "the secret is that ..." is prose. Group 1 is the value.
_PASSWORD_VALUE = r"\s{0,3}[\"'“‘]?([^\s\"'”’,，;；。、)）\]}<>]{1,128})"
_PASSWORD_RES = tuple(
    re.compile(label + r"[\"']?\s{0,3}" + separator + _PASSWORD_VALUE)
    for labels, separator in (
        (("pass(?:word|wd|code)", "pwd", "密码", "口令"), "(?:[:=：]|is |为|是)"),
        (("secret", "token", "api[_-]?key", "access[_-]?key"), "[:=：]"))
    for label in labels)

# High-entropy tokens: 24+ characters mixing upper, lower and digits with >= 4 bits/char
# (random base62 reaches ~5.9; English words and hex hashes stay below or lack a class).
MIN_SECRET_CHARS, MAX_SECRET_CHARS = 24, 256
MIN_SECRET_ENTROPY_BITS = 4.0
# No left-boundary check needed: scanning left to right, a match always starts at its run's start.
_TOKEN_RE = re.compile(r"[A-Za-z0-9+/_=-]{24,}")


def detect_api_key(text: str) -> list[Finding]:
    return [Finding("API_KEY", m.start(pattern.groups), m.end(pattern.groups),
                    m.group(pattern.groups), 0.99)
            for pattern in _API_KEY_RES for m in pattern.finditer(text)
            if not follows_token_char(text, m.start())]


def detect_private_key(text: str) -> list[Finding]:
    findings = []
    position = 0
    while (begin := _PEM_BEGIN_RE.search(text, position)) is not None:
        end = _PEM_END_RE.search(text, begin.end())
        if end is not None:
            stop = end.end()
        else:
            body = _PEM_BODY_RE.match(text, begin.end()).group()
            stop = begin.end() + len(body.rstrip())
        findings.append(Finding("PRIVATE_KEY", begin.start(), stop, text[begin.start():stop], 1.0))
        if end is None:
            break  # no END anywhere after this BEGIN: later BEGINs have none either
        position = stop
    return findings


def detect_password(text: str) -> list[Finding]:
    findings = []
    folded = fold_case(text)
    for pattern in _PASSWORD_RES:
        for match in pattern.finditer(folded):
            if follows_ascii_alnum(text, match.start()) and text[match.start()].isascii():
                continue  # "mypassword=" or "bypass:" is not a label; 密码 needs no boundary
            start = match.start(1)
            value = text[start:match.end(1)].rstrip(".")  # "api_key=xyz." ends a sentence
            if value:
                findings.append(Finding("PASSWORD", start, start + len(value), value, 0.85))
    # "access_key=" also ends in "key=": the same value can be found twice.
    return resolve_overlaps(findings)


def shannon_entropy_bits(token: str) -> float:
    counts = Counter(token)
    return -sum(n / len(token) * math.log2(n / len(token)) for n in counts.values())


def _looks_random(token: str) -> bool:
    return (MIN_SECRET_CHARS <= len(token) <= MAX_SECRET_CHARS
            and any(c.isupper() for c in token) and any(c.islower() for c in token)
            and any(c.isdigit() for c in token)
            and shannon_entropy_bits(token) >= MIN_SECRET_ENTROPY_BITS)


def detect_high_entropy(text: str) -> list[Finding]:
    return [Finding("SECRET", m.start(), m.end(), m.group(), 0.6)
            for m in _TOKEN_RE.finditer(text) if _looks_random(m.group())]
