"""Words for BM25 and overlap units for citation checks, for Chinese (simplified and traditional) and English.

BM25 needs words: Chinese has no spaces, so jieba segments it; ASCII runs come out of jieba as whole
words, which we lowercase. Citation support needs units that survive paraphrase without a dictionary:
character bigrams for CJK text, lowercase words for the rest.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from pathlib import Path

import jieba
from bm25s.stopwords import STOPWORDS_EN

# Only English function words are dropped: Chinese ones are a single character each, BM25's IDF already
# weighs them down, and a short Chinese question can consist of little else.
ENGLISH_STOPWORDS = frozenset(STOPWORDS_EN)
_WORD_CHAR = re.compile(r"\w")
_CJK_RUN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]+")
_LATIN_WORD = re.compile(r"[^\W_\u3400-\u9fff\uf900-\ufaff]+")


class WordTokenizer:
    """jieba with its dictionary cache kept under `cache_dir` (jieba defaults to the system temp folder)."""

    def __init__(self, cache_dir: Path) -> None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        # jieba logs "Building prefix dict..." at DEBUG to stderr on its own handler.
        jieba.setLogLevel(logging.WARNING)
        self._jieba = jieba.Tokenizer()
        self._jieba.tmp_dir = str(cache_dir)
        self._jieba.initialize()

    def words(self, text: str) -> list[str]:
        """Lowercased words, without punctuation, whitespace or English stopwords."""
        return [
            word
            for piece in self._jieba.cut(text)
            if (word := piece.strip().lower()) and _WORD_CHAR.search(word) and word not in ENGLISH_STOPWORDS
        ]


@lru_cache(maxsize=4)
def word_tokenizer(cache_dir: Path) -> WordTokenizer:
    """One tokenizer per cache folder: loading jieba's dictionary takes about a second."""
    return WordTokenizer(cache_dir)


def overlap_units(text: str) -> set[str]:
    """CJK character bigrams (single characters for one-character runs) and lowercase non-stopwords."""
    units: set[str] = set()
    for run in _CJK_RUN.findall(text):
        units.update(run[i : i + 2] for i in range(max(1, len(run) - 1)))
    units.update(w for w in (m.lower() for m in _LATIN_WORD.findall(text)) if w not in ENGLISH_STOPWORDS)
    return units


def has_cjk(text: str) -> bool:
    return _CJK_RUN.search(text) is not None
