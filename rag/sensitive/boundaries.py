"""Left-boundary checks done in Python after a match.

Why not a lookbehind: `re` can only skip ahead to candidate positions (a fast C scan for the
pattern's first literal or character class) when the pattern *starts* with one; a leading
lookbehind makes it attempt a full match at every position, 5-50x slower on large texts. So the
patterns start with their first real character and the detector rejects a match whose left
neighbour continues a number or a token. Right boundaries stay as lookaheads (they run only at
the end of a candidate).
"""

from __future__ import annotations


def is_ascii_alnum(char: str) -> bool:
    return char.isascii() and char.isalnum()


def follows_ascii_alnum(text: str, start: int) -> bool:
    return start > 0 and is_ascii_alnum(text[start - 1])


def follows_token_char(text: str, start: int) -> bool:
    """True when text[start] continues an identifier-like token (letters, digits, _ or -)."""
    return start > 0 and (is_ascii_alnum(text[start - 1]) or text[start - 1] in "_-")


def follows_digit_group(text: str, start: int) -> bool:
    """True when text[start] continues a number: a digit before it, or a digit and one space or
    dash (a grouped card number "6222 1381 2345 6789" holds no mobile number)."""
    if start == 0:
        return False
    before = text[start - 1]
    if before.isascii() and before.isdigit():
        return True
    return before in " -" and start > 1 and text[start - 2].isascii() and text[start - 2].isdigit()
