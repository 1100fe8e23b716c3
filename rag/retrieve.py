"""Question → ranked chunk ids: dense (FAISS) and BM25 over the permitted chunks, fused (z-score or RRF).

Filter semantics and the fusion formula are written down in docs/retrieval.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ingest.embed import Embedder
from ingest.index import KBIndex


ZSCORE = "zscore"
RRF = "rrf"


@dataclass(frozen=True)
class RetrieveConfig:
    # How the two rankers' candidates become one ranking: ZSCORE sums each ranker's scores after
    # standardising them over its own candidates; RRF sums weight / (rrf_k + rank). On the pooled
    # DEV sets (docs/quality.md, tuned on questions 200-400 of each set, reported on 0-200) z-score
    # fusion at 0.7 dense / 0.3 BM25 gave recall@1 0.849 against 0.817 for RRF 1:1: RRF throws away
    # how far ahead the top candidate is, which is what separates a sure hit from a near tie.
    fusion: Literal["zscore", "rrf"] = ZSCORE
    dense_weight: float = 0.7
    bm25_weight: float = 0.3
    # k=60 is the constant of Cormack et al. (2009): it damps the head so that one list's rank 1 does
    # not drown agreement between lists further down.
    rrf_k: int = 60
    # Each ranker contributes max(min_candidates, candidates_per_result * top_k) candidates: a chunk
    # ranked low by one ranker but high by the other still reaches the fusion.
    min_candidates: int = 50
    candidates_per_result: int = 4

    def num_candidates(self, top_k: int) -> int:
        return max(self.min_candidates, self.candidates_per_result * top_k)


@dataclass(frozen=True)
class Query:
    text: str
    top_k: int = 5
    # None: every chunk of the query's indexes; otherwise only these (the caller's ACL result).
    allowed_chunk_ids: np.ndarray | None = None


@dataclass(frozen=True)
class ScoredChunk:
    chunk_id: int
    score: float  # fused score (its scale depends on RetrieveConfig.fusion; it only orders results)
    dense_rank: int | None  # 1-based rank in the dense list, None when not among its candidates
    bm25_rank: int | None
    # Cosine of query and chunk, computed for every result (also BM25-only ones): the refusal
    # threshold is calibrated on it, as fused scores only order results and say nothing about relevance.
    dense_score: float
    # The cross-encoder's score when rag/rerank.py reordered this hit; None when no reranker ran.
    rerank_score: float | None = None


def reciprocal_rank_fusion(
    ranked_lists: Sequence[tuple[Sequence[int], float]], *, k: int
) -> dict[int, float]:
    """{id: Σ weight / (k + rank)} over lists of ids ordered best first (rank starts at 1).

    A list of weight 0 adds no ids: a single-ranker ablation must rank only that ranker's hits, not
    append the other ranker's hits at score 0.
    """
    fused: dict[int, float] = {}
    for ids, weight in ranked_lists:
        if weight == 0:
            continue
        for rank, chunk_id in enumerate(ids, start=1):
            fused[chunk_id] = fused.get(chunk_id, 0.0) + weight / (k + rank)
    return fused


def zscore_fusion(scored_lists: Sequence[tuple[Sequence[tuple[int, float]], float]]) -> dict[int, float]:
    """{id: Σ weight × z} where z = (score − mean) / std over that list's own (id, score) candidates.

    Standardising puts a cosine and a BM25 score on one scale while keeping the gaps between them. A
    chunk that a list did not return gets that list's lowest z: it ranked below every candidate shown.
    A list of weight 0 adds no ids (as in reciprocal_rank_fusion).
    """
    weighted: list[tuple[dict[int, float], float]] = []  # ({id: weight × z}, weight × lowest z) per list
    for hits, weight in scored_lists:
        if weight == 0 or not hits:
            continue
        scores = np.array([score for _, score in hits], dtype=np.float64)
        z = weight * (scores - scores.mean()) / (scores.std() or 1.0)
        weighted.append(({chunk_id: float(v) for (chunk_id, _), v in zip(hits, z)}, float(z.min())))
    every_id = {chunk_id for by_id, _ in weighted for chunk_id in by_id}
    return {chunk_id: sum(by_id.get(chunk_id, floor) for by_id, floor in weighted) for chunk_id in every_id}

def merge_by_score(hits_per_index: Sequence[list[tuple[int, float]]], limit: int) -> list[tuple[int, float]]:
    """One ranking of (id, score) out of several indexes' hits, best score first."""
    return sorted((hit for hits in hits_per_index for hit in hits), key=lambda hit: -hit[1])[:limit]


def retrieve(
    query: Query, *, indexes: Sequence[KBIndex], embedder: Embedder, config: RetrieveConfig
) -> list[ScoredChunk]:
    if not indexes or query.top_k <= 0 or not query.text.strip():
        return []
    return retrieve_by_vector(query, embedder.embed_query(query.text), indexes=indexes, config=config)


def retrieve_by_vector(
    query: Query, qvec: np.ndarray, *, indexes: Sequence[KBIndex], config: RetrieveConfig
) -> list[ScoredChunk]:
    """retrieve() with the query already embedded: the evaluation ranks one query several ways."""
    if not indexes or query.top_k <= 0 or not query.text.strip():
        return []
    num_candidates = config.num_candidates(query.top_k)
    # Cosines share one scale across indexes (same embedder); BM25 scores of different indexes use
    # different IDF tables, so their merge is approximate — fine for the usual one or two KBs per query.
    allowed = query.allowed_chunk_ids
    dense_hits = merge_by_score(
        [index.search_dense(qvec, num_candidates, allowed) for index in indexes], num_candidates
    ) if config.dense_weight else []
    bm25_hits = merge_by_score(
        [index.search_bm25(query.text, num_candidates, allowed) for index in indexes], num_candidates
    ) if config.bm25_weight else []
    dense_ids = [chunk_id for chunk_id, _ in dense_hits]
    bm25_ids = [chunk_id for chunk_id, _ in bm25_hits]
    if config.fusion == RRF:
        fused = reciprocal_rank_fusion(
            [(dense_ids, config.dense_weight), (bm25_ids, config.bm25_weight)], k=config.rrf_k
        )
    else:
        fused = zscore_fusion([(dense_hits, config.dense_weight), (bm25_hits, config.bm25_weight)])
    dense_rank = {chunk_id: rank for rank, chunk_id in enumerate(dense_ids, start=1)}
    bm25_rank = {chunk_id: rank for rank, chunk_id in enumerate(bm25_ids, start=1)}
    # Ties (same fused score) go to the better dense rank, then the smaller id, so results are stable.
    top = sorted(fused, key=lambda i: (-fused[i], dense_rank.get(i, num_candidates + 1), i))[: query.top_k]
    cosines = _cosines(qvec, top, indexes)
    return [
        ScoredChunk(
            chunk_id=chunk_id,
            score=fused[chunk_id],
            dense_rank=dense_rank.get(chunk_id),
            bm25_rank=bm25_rank.get(chunk_id),
            dense_score=cosines[chunk_id],
        )
        for chunk_id in top
    ]


def _cosines(qvec: np.ndarray, chunk_ids: Sequence[int], indexes: Sequence[KBIndex]) -> dict[int, float]:
    cosines: dict[int, float] = {}
    for index in indexes:
        here = [i for i in chunk_ids if i not in cosines and index.contains(i)]
        cosines.update(zip(here, index.dense_scores(qvec, np.array(here, dtype=np.int64)).tolist()))
    return cosines
