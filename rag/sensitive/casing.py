"""Case folding that keeps string offsets, so a match on the folded text indexes the original."""

from __future__ import annotations


def fold_case(text: str) -> str:
    folded = text.lower()
    if len(folded) == len(text):
        return folded
    return "".join(char.lower()[0] for char in text)  # e.g. "İ".lower() is two characters
