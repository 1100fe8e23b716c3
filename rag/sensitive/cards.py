"""Payment identifiers: bank cards (Luhn + issuer prefix) and IBANs (ISO 13616 mod-97)."""

from __future__ import annotations

import re

from rag.sensitive.boundaries import follows_ascii_alnum, follows_digit_group
from rag.sensitive.finding import Finding

def _prefix_range(low: int, high: int) -> tuple[str, ...]:
    return tuple(str(n) for n in range(low, high + 1))


# (issuer prefixes, card lengths) of the networks a Chinese enterprise meets. Luhn alone passes
# 1 random number in 10; prefix + length cut that further, and keep an 18-digit resident ID with
# a typo in its check digit, or a 15-digit legacy ID, from reading as a Visa card.
_CARD_NETWORKS: tuple[tuple[tuple[str, ...], frozenset[int]], ...] = (
    (("62",), frozenset(range(16, 20))),  # UnionPay
    (("60", "9"), frozenset({16, 19})),  # UnionPay-era domestic debit cards (e.g. 9558...)
    (("4",), frozenset({13, 16, 19})),  # Visa
    (_prefix_range(51, 55) + _prefix_range(2221, 2720), frozenset({16})),  # Mastercard
    (("34", "37"), frozenset({15})),  # American Express
    (("35",), frozenset(range(16, 20))),  # JCB
    (("1800", "2131"), frozenset({15})),  # JCB (legacy)
    (("30", "36", "38", "39"), frozenset({14, 16})),  # Diners Club
    (("6011", "65") + _prefix_range(644, 649), frozenset(range(16, 20))),  # Discover
    (("50", "56", "57", "58", "63", "67", "68"), frozenset(range(13, 20))),  # Maestro
)
# Printed the way cards are: one run of digits, or groups with one consistent separator
# (4-4-4-4[-1..4], 4-6-4/5 for Amex and Diners, 6-13 for some UnionPay cards). Mixed or uneven
# grouping ("5520 0734 4712 9992 1") is some other number.
# (The leading \d is factored out so `re` can skip to digits; left boundary: boundaries.py.)
_CARD_RE = re.compile(
    r"\d(?:\d{12,18}"
    r"|\d{3}(?P<s1>[ -])\d{4}(?:(?P=s1)\d{4}){1,2}(?:(?P=s1)\d{1,4})?"
    r"|\d{3}(?P<s2>[ -])\d{6}(?P=s2)\d{4,5}"
    r"|\d{5}(?P<s3>[ -])\d{13})"
    r"(?![0-9A-Za-z])(?![ -][0-9])")
_CARD_SEPARATORS = str.maketrans("", "", " -")

# IBAN country codes (ISO 13616 registry); a courier number such as "YT0341796449281" has the
# same shape and passes mod-97 one time in 97.
_IBAN_COUNTRIES = frozenset(
    "AD AE AL AT AZ BA BE BG BH BI BR BY CH CR CY CZ DE DJ DK DO EE EG ES FI FK FO FR GB GE GI GL "
    "GR GT HR HU IE IL IQ IS IT JO KW KZ LB LC LI LT LU LV LY MC MD ME MK MN MR MT MU NI NL NO OM "
    "PK PL PS PT QA RO RS RU SA SC SD SE SI SK SM SO ST SV TL TN TR UA VA VG XK YE".split())
_IBAN_LENGTH_RANGE = (15, 34)
# Electronic form (no spaces) or print form (groups of four after the first four).
# Anchored on the check digits (digits are rarer than letters, so `re` tries fewer positions);
# the country code before them is checked by the lookbehind.
_IBAN_RE = re.compile(r"\d{2}(?<=[A-Za-z]{2}\d{2})"
                      r"(?:[0-9A-Za-z]{11,30}|(?: [0-9A-Za-z]{4}){2,7}(?: [0-9A-Za-z]{1,3})?)"
                      r"(?![0-9A-Za-z])")
_IBAN_COUNTRY_CHARS = 2


def luhn_is_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def is_card_number(digits: str) -> bool:
    return (any(len(digits) in lengths and digits.startswith(prefixes)
                for prefixes, lengths in _CARD_NETWORKS)
            and luhn_is_valid(digits))


def detect_bank_card(text: str) -> list[Finding]:
    return [Finding("BANK_CARD", m.start(), m.end(), m.group(), 0.9)
            for m in _CARD_RE.finditer(text)
            if not follows_ascii_alnum(text, m.start()) and not follows_digit_group(text, m.start())
            and is_card_number(m.group().translate(_CARD_SEPARATORS))]


def is_valid_iban(candidate: str) -> bool:
    code = candidate.replace(" ", "").upper()
    if code[:2] not in _IBAN_COUNTRIES or not (
            _IBAN_LENGTH_RANGE[0] <= len(code) <= _IBAN_LENGTH_RANGE[1]):
        return False
    rearranged = code[4:] + code[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


def detect_iban(text: str) -> list[Finding]:
    findings = []
    for match in _IBAN_RE.finditer(text):
        start = match.start() - _IBAN_COUNTRY_CHARS
        candidate = text[start:match.end()]
        if not follows_ascii_alnum(text, start) and is_valid_iban(candidate):
            findings.append(Finding("IBAN", start, match.end(), candidate, 1.0))
    return findings
