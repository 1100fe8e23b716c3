"""Retrieval and answer metrics of one question's result, and their summary over many (docs/quality.md)."""

from __future__ import annotations

import math
import re
import string
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from rag.citations import CITATION_MARKER

RANK_DEPTH = 10  # recall@10, MRR@10 and nDCG@10 need ten results


@dataclass
class QuestionResult:
    set_name: str
    system: str
    answerable: bool
    gold: frozenset[str]
    answers: tuple[str, ...]
    ranked: list[str] | None  # passage id of each ranked chunk, best first; None: not retrieved (oracle)
    latency_s: float
    answer: str | None = None  # None: not generated
    refused: bool | None = None
    # Who refused (rag/answer.py): "threshold" (no source reached the cosine threshold; the model was
    # not asked), "judge" (the model judged the sources not to hold the answer) or "model" (it replied
    # with the refusal). Tells a threshold or judge set too strict from a model that will not answer.
    refused_by: str | None = None
    cited: list[str] | None = None  # passage id of each cited chunk
    # The refusal judge's score of each source (passage id, score; None: abstained) and the passage
    # ids the answer prompt kept: to calibrate rag/judge.py's thresholds from the log.
    judged: list[tuple[str, float | None]] | None = None
    used: list[str] | None = None
    question_id: str = ""


def first_relevant_rank(ranked: Sequence[str], gold: set[str], k: int) -> int | None:
    """1-based rank of the first result among the first k that is a gold passage."""
    return next((rank for rank, pid in enumerate(ranked[:k], start=1) if pid in gold), None)


def recall_at(ranked: Sequence[str], gold: set[str], k: int) -> float:
    return float(first_relevant_rank(ranked, gold, k) is not None)


def reciprocal_rank(ranked: Sequence[str], gold: set[str], k: int = RANK_DEPTH) -> float:
    rank = first_relevant_rank(ranked, gold, k)
    return 1.0 / rank if rank else 0.0


def ndcg_at(ranked: Sequence[str], gold: set[str], k: int = RANK_DEPTH) -> float:
    """Binary gains; a gold passage counts once, at its best-ranked chunk."""
    if not gold:
        return 0.0
    seen: set[str] = set()
    dcg = 0.0
    for rank, pid in enumerate(ranked[:k], start=1):
        if pid in gold and pid not in seen:
            seen.add(pid)
            dcg += 1.0 / math.log2(rank + 1)
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(k, len(gold)) + 1))
    return dcg / ideal


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_CJK_CHAR = re.compile(r"([\u3400-\u9fff\uf900-\ufaff])")
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation, with Unicode punctuation (，。「」…) removed too and [n] markers dropped."""
    text = CITATION_MARKER.sub(" ", text).lower()
    text = "".join(
        " " if ch in _PUNCTUATION or unicodedata.category(ch).startswith("P") else ch for ch in text
    )
    return " ".join(_ARTICLES.sub(" ", text).split())


def answer_tokens(text: str) -> list[str]:
    """CJK characters one by one, other words whole: character-level for Chinese, words for English."""
    return _CJK_CHAR.sub(r" \1 ", normalize_answer(text)).split()


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    predicted = answer_tokens(prediction)
    return float(any(predicted == answer_tokens(gold) for gold in golds))


def f1_score(prediction: str, golds: Sequence[str]) -> float:
    predicted = answer_tokens(prediction)
    best = 0.0
    for gold in golds:
        expected = answer_tokens(gold)
        common = sum(min(predicted.count(t), expected.count(t)) for t in set(predicted) & set(expected))
        if common:
            precision, recall = common / len(predicted), common / len(expected)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if len(values) else None


def summarize(results: Sequence[QuestionResult]) -> dict:
    """The metrics of some questions' results, in the JSON shape of `zhiku eval --json`."""
    ranked = [r for r in results if r.answerable and r.gold and r.ranked is not None]
    summary: dict = {
        "retrieval": {
            "recall@1": _mean(recall_at(r.ranked, set(r.gold), 1) for r in ranked),
            "recall@5": _mean(recall_at(r.ranked, set(r.gold), 5) for r in ranked),
            "recall@10": _mean(recall_at(r.ranked, set(r.gold), 10) for r in ranked),
            "mrr": _mean(reciprocal_rank(r.ranked, set(r.gold)) for r in ranked),
            "ndcg@10": _mean(ndcg_at(r.ranked, set(r.gold)) for r in ranked),
        },
    }
    generated = [r for r in results if r.answer is not None]
    if generated:
        answerable = [r for r in generated if r.answerable]
        unanswerable = [r for r in generated if not r.answerable]
        summary["answer"] = {
            "em": _mean(0.0 if r.refused else exact_match(r.answer, r.answers) for r in answerable),
            "f1": _mean(0.0 if r.refused else f1_score(r.answer, r.answers) for r in answerable),
        }
        cited = [pid in r.gold for r in answerable for pid in (r.cited or [])]
        summary["citation_precision"] = _mean(cited)
        summary["refusal"] = {
            "accuracy": _mean(float(r.refused) for r in unanswerable),
            "false_refusal_rate": _mean(float(r.refused) for r in answerable),
            # share of the refusals made by the cosine threshold, by the model's yes/no judgement
            "by_threshold": _mean(float(r.refused_by == "threshold") for r in generated if r.refused),
            "by_judge": _mean(float(r.refused_by == "judge") for r in generated if r.refused),
        }
    latencies = [r.latency_s for r in results]
    summary["latency_s"] = {"p50": percentile(latencies, 50), "p95": percentile(latencies, 95)}
    summary["n_questions"] = len(results)
    return summary


def _mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return float(np.mean(values)) if values else None
