"""Chinese identifiers: resident ID (GB 11643), unified social credit code (GB 32100), passport,
licence plate. Each detector is a pure `text -> list[Finding]`.

Region check: province level only (the first two digits must be a GB/T 2260 province code). A
full county table (~3,000 codes, revised yearly) could not be derived offline with provenance, so
an ID with a valid province, a real birth date and a passing checksum is accepted.
"""

from __future__ import annotations

import datetime
import re

from rag.sensitive.boundaries import follows_ascii_alnum
from rag.sensitive.finding import Finding

# GB/T 2260 province-level codes (mainland), plus 71/81/82 (Taiwan, Hong Kong, Macao) and
# 83 (residence permits for Hong Kong/Macao/Taiwan residents, numbered like resident IDs).
PROVINCE_CODES = frozenset({
    "11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37",
    "41", "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64",
    "65", "71", "81", "82", "83",
})
# Birth years outside this window are typos or other numbers; fixed (not "today") so that
# detection is a pure function of the text.
MIN_BIRTH_YEAR, MAX_BIRTH_YEAR = 1900, 2099

_ID_WEIGHTS = tuple(pow(2, 17 - i, 11) for i in range(17))
_ID_CHECK_CHARS = "10X98765432"
# 6-8-4 with optional single spaces, the way IDs are often typed in forms and résumés. Left
# boundaries are checked in Python (see boundaries.py for why).
# One pass for both lengths (18 characters, or a legacy 15 digits); the leading \d is factored
# out so `re` can skip ahead to digits.
_ID_RE = re.compile(r"\d(?:\d{5} ?\d{8} ?\d{3}[0-9Xx]|\d{14})(?![0-9A-Za-z])")

_USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # GB 32100: 31 symbols, no I O S V Z
_USCC_VALUES = {char: value for value, char in enumerate(_USCC_CHARS)}
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
# Anchored on the six region digits (digits are rarer than letters, so `re` tries fewer
# positions); the two leading characters are checked by the lookbehind.
_USCC_RE = re.compile(
    r"\d{6}(?<=[0-9A-HJ-NPQRTUWXY]{2}\d{6})[0-9A-HJ-NPQRTUWXY]{10}(?![0-9A-Za-z])")
_USCC_DIGITS_OFFSET = 2

# Ordinary passports: E + 8 digits (2012-), E + letter + 7 digits (once E-digits ran out),
# G + 8 digits (pre-2012); official/diplomatic/service: D, S, P (+E) + 7 digits.
# Written as a flat alternation whose branches all start with a literal letter, so `re` can
# skip ahead to those letters.
_PASSPORT_RE = re.compile("|".join(
    shape + r"(?![0-9A-Za-z])"
    for shape in (r"E\d{8}", r"G\d{8}", r"E[A-HJ-NP-Z]\d{7}", r"D\d{7}", r"DE\d{7}", r"S\d{7}",
                  r"SE\d{7}", r"P\d{7}", r"PE\d{7}")))

_PLATE_PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
# Province character + issuing-office letter + 5 symbols (6 for new-energy plates, which start
# with D/F or end with D/F); a middle dot or space is commonly typed after the office letter.
_PLATE_RE = re.compile(
    rf"[{_PLATE_PROVINCES}][A-HJ-NP-Z][·• ]?"
    r"(?:[DF][A-HJ-NP-Z0-9]\d{4}|\d{5}[DF]|[A-HJ-NP-Z0-9]{4}[A-HJ-NP-Z0-9挂学警港澳])"
    r"(?![0-9A-Za-z])")


def _is_valid_date(year: int, month: int, day: int) -> bool:
    if not MIN_BIRTH_YEAR <= year <= MAX_BIRTH_YEAR:
        return False
    try:
        datetime.date(year, month, day)
    except ValueError:
        return False
    return True


def id18_check_char(first17: str) -> str:
    """GB 11643 check character for the first 17 digits (ISO 7064 MOD 11-2)."""
    total = sum(int(digit) * weight for digit, weight in zip(first17, _ID_WEIGHTS))
    return _ID_CHECK_CHARS[total % 11]


def is_valid_id18(digits: str) -> bool:
    if len(digits) != 18 or digits[:2] not in PROVINCE_CODES:
        return False
    if not _is_valid_date(int(digits[6:10]), int(digits[10:12]), int(digits[12:14])):
        return False
    return id18_check_char(digits[:17]) == digits[17].upper()


def is_valid_id15(digits: str) -> bool:
    """Legacy 15-digit ID: region + YYMMDD (19YY) + sequence; it has no check digit."""
    return (len(digits) == 15 and digits[:2] in PROVINCE_CODES
            and _is_valid_date(1900 + int(digits[6:8]), int(digits[8:10]), int(digits[10:12])))


def detect_cn_id(text: str) -> list[Finding]:
    findings = []
    for match in _ID_RE.finditer(text):
        if follows_ascii_alnum(text, match.start()):
            continue
        digits = match.group().replace(" ", "")
        if is_valid_id18(digits):
            findings.append(Finding("CN_ID", match.start(), match.end(), match.group(), 1.0))
        elif is_valid_id15(match.group()):
            findings.append(Finding("CN_ID", match.start(), match.end(), match.group(), 0.6))
    return findings


def uscc_check_char(first17: str) -> str:
    total = sum(_USCC_VALUES[char] * weight for char, weight in zip(first17, _USCC_WEIGHTS))
    return _USCC_CHARS[(31 - total % 31) % 31]


def is_valid_uscc(code: str) -> bool:
    return (len(code) == 18 and all(char in _USCC_VALUES for char in code)
            and uscc_check_char(code[:17]) == code[17])


def detect_uscc(text: str) -> list[Finding]:
    findings = []
    for match in _USCC_RE.finditer(text):
        start = match.start() - _USCC_DIGITS_OFFSET
        code = text[start:match.end()]
        if not follows_ascii_alnum(text, start) and is_valid_uscc(code):
            findings.append(Finding("USCC", start, match.end(), code, 1.0))
    return findings


def detect_cn_passport(text: str) -> list[Finding]:
    return [Finding("CN_PASSPORT", m.start(), m.end(), m.group(), 0.7)
            for m in _PASSPORT_RE.finditer(text)
            if not follows_ascii_alnum(text, m.start())]


def detect_cn_plate(text: str) -> list[Finding]:
    return [Finding("CN_PLATE", m.start(), m.end(), m.group(), 0.8)
            for m in _PLATE_RE.finditer(text)]
