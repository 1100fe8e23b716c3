"""`[n]` markers in an answer → the sources they name, and how well each cited sentence is supported.

Support of a sentence by a source = the share of the sentence's overlap units (CJK character
bigrams, English non-stopwords; see rag/tokenize.py) that also occur in the source. It is lexical:
it catches citations of the wrong source and invented details, not subtle paraphrase errors.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from rag.prompt import Source
from rag.tokenize import overlap_units

# [1], [1, 2], [1，2], [1、2] and the full-width 【1】 that Chinese output often uses.
CITATION_MARKER = re.compile(r"\[(\d+(?:\s*[,，、]\s*\d+)*)\]|【(\d+(?:\s*[,，、]\s*\d+)*)】")
_TERMINATOR = r"[。！？!?；;]|\.(?=\s|$)"
# A marker written after the sentence's full stop ("…France. [1]") belongs to that sentence.
_MARKERS_AFTER_STOP = re.compile(rf"({_TERMINATOR})(\s*(?:(?:{CITATION_MARKER.pattern})\s*)+)")
_SENTENCE_END = re.compile(rf"(?:{_TERMINATOR})|\n+")
DEFAULT_MIN_SUPPORT = 0.3


@dataclass(frozen=True)
class CitedSentence:
    text: str  # without its markers
    ns: tuple[int, ...]  # valid source numbers cited by it
    support: float  # best support among the cited sources, 0..1
    is_supported: bool


@dataclass(frozen=True)
class Citation:
    n: int
    source: Source
    support: float  # best support of any sentence citing this source
    is_supported: bool
    is_inferred: bool = False  # attributed by support because the answer carried no usable marker


def _marker_numbers(match: re.Match) -> list[int]:
    return [int(n) for n in re.split(r"\s*[,，、]\s*", match.group(1) or match.group(2))]


def cited_numbers(text: str) -> list[int]:
    """Every number in every marker, in order, repeats included."""
    return [n for match in CITATION_MARKER.finditer(text) for n in _marker_numbers(match)]


def strip_markers(text: str) -> str:
    return CITATION_MARKER.sub("", text)


def split_sentences(answer_text: str) -> list[str]:
    """Sentences with their markers, a marker after a full stop moved before it."""
    moved = _MARKERS_AFTER_STOP.sub(lambda m: m.group(2).strip() + m.group(1) + " ", answer_text)
    pieces, start = [], 0
    for end in _SENTENCE_END.finditer(moved):
        pieces.append(moved[start : end.end()])
        start = end.end()
    pieces.append(moved[start:])
    return [p.strip() for p in pieces if p.strip()]


def support_score(sentence: str, source_text: str) -> float:
    units = overlap_units(strip_markers(sentence))
    if not units:
        return 1.0  # nothing checkable (e.g. a bare number list): do not flag
    return len(units & overlap_units(source_text)) / len(units)


def check_sentences(
    answer_text: str, sources: Sequence[Source], *, min_support: float = DEFAULT_MIN_SUPPORT
) -> list[CitedSentence]:
    """Every sentence that cites at least one existing source, with its support."""
    by_n = {s.n: s for s in sources}
    checked = []
    for sentence in split_sentences(answer_text):
        ns = tuple(dict.fromkeys(n for n in cited_numbers(sentence) if n in by_n))
        if not ns:
            continue
        support = max(support_score(sentence, by_n[n].text) for n in ns)
        checked.append(CitedSentence(strip_markers(sentence).strip(), ns, support, support >= min_support))
    return checked


def parse_citations(
    answer_text: str, sources: Sequence[Source], *, min_support: float = DEFAULT_MIN_SUPPORT
) -> list[Citation]:
    """One Citation per cited source, in order of first mention; numbers that name no source are dropped."""
    by_n = {s.n: s for s in sources}
    best: dict[int, float] = {n: 0.0 for n in cited_numbers(answer_text) if n in by_n}
    for sentence in check_sentences(answer_text, sources, min_support=min_support):
        for n in sentence.ns:
            best[n] = max(best[n], support_score(sentence.text, by_n[n].text))
    return [Citation(n, by_n[n], support, support >= min_support) for n, support in best.items()]


def attribute_citations(
    answer_text: str, sources: Sequence[Source], *, min_support: float = DEFAULT_MIN_SUPPORT
) -> list[Citation]:
    """Citations for an answer written without markers: for each sentence, the source that supports
    it best, when that support passes `min_support`. Small models often answer correctly from the
    sources but forget the [n]; the user still needs to see where the answer came from."""
    by_n = {s.n: s for s in sources}
    best: dict[int, float] = {}
    for sentence in split_sentences(answer_text):
        if not overlap_units(sentence):
            continue
        n, support = max(((s.n, support_score(sentence, s.text)) for s in sources), key=lambda pair: pair[1])
        if support >= min_support:
            best[n] = max(best.get(n, 0.0), support)
    return [Citation(n, by_n[n], support, True, is_inferred=True) for n, support in sorted(best.items())]
