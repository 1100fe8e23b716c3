"""Fusion as a pure function, and retrieve() over real indexes with the fast real embedder."""

from __future__ import annotations

import numpy as np
import pytest

from ingest.embed import load_embedder
from ingest.index import KBIndex
from rag.retrieve import Query, RetrieveConfig, merge_by_score, reciprocal_rank_fusion, retrieve, zscore_fusion

FAST_EMBEDDER = "multilingual-e5-small"


def test_rrf_sums_weighted_reciprocal_ranks():
    fused = reciprocal_rank_fusion([([7, 8], 1.0), ([8, 9], 0.5)], k=60)
    assert fused == pytest.approx({7: 1 / 61, 8: 1 / 62 + 0.5 / 61, 9: 0.5 / 62})


def test_rrf_agreement_beats_a_single_first_place():
    fused = reciprocal_rank_fusion([([1, 2, 3], 1.0), ([4, 2, 5], 1.0)], k=60)
    assert max(fused, key=fused.get) == 2


def test_rrf_weight_zero_ignores_a_ranker():
    fused = reciprocal_rank_fusion([([1, 2], 1.0), ([2, 1], 0.0)], k=60)
    assert fused[1] > fused[2]


def test_zscore_fusion_keeps_a_clear_lead_that_rrf_would_flatten():
    # Dense is sure of 1 (far ahead); BM25 mildly prefers 2. RRF 1:1 cannot tell these apart and
    # falls to the tie-break; standardised scores keep dense's margin.
    dense = [(1, 0.90), (2, 0.50), (3, 0.49), (4, 0.48)]
    bm25 = [(2, 10.0), (1, 9.0), (3, 8.0), (4, 7.0)]
    fused = zscore_fusion([(dense, 0.5), (bm25, 0.5)])
    assert max(fused, key=fused.get) == 1
    rrf = reciprocal_rank_fusion([([i for i, _ in dense], 1.0), ([i for i, _ in bm25], 1.0)], k=60)
    assert rrf[1] == pytest.approx(rrf[2])


def test_zscore_fusion_ranks_a_chunk_one_list_missed_below_that_lists_candidates():
    fused = zscore_fusion([([(1, 0.9), (2, 0.1)], 1.0), ([(3, 5.0), (1, 1.0)], 1.0)])
    assert set(fused) == {1, 2, 3}
    # z of each two-item list is ±1. 2 is missing from BM25's list: it gets BM25's lowest z (that of
    # 1), not a free zero; likewise 3 gets dense's lowest.
    assert fused == pytest.approx({1: 1.0 - 1.0, 2: -1.0 - 1.0, 3: 1.0 - 1.0})


def test_zscore_fusion_weight_zero_ignores_a_ranker():
    assert set(zscore_fusion([([(1, 0.9)], 1.0), ([(2, 3.0)], 0.0)])) == {1}


def test_merge_by_score_interleaves_indexes():
    assert merge_by_score([[(1, 0.9), (2, 0.5)], [(3, 0.7)]], limit=2) == [(1, 0.9), (3, 0.7)]


PASSAGES_KB1 = {
    101: "数据备份：系统每天凌晨两点自动把数据目录打包备份到 backups 文件夹，保留七天。",
    102: "用户管理：管理员可以在设置页面创建用户并分配角色。",
    103: "The API listens on port 8000 and requires a bearer token for every request.",
    104: "Passwords must be at least twelve characters long and expire after ninety days.",
}
PASSAGES_KB2 = {
    201: "知识库可以上传 PDF、Word、Excel 等格式的文档，系统会自动解析并建立索引。",
    202: "The model server streams tokens over Server-Sent Events.",
}


@pytest.fixture(scope="module")
def embedder(models_dir):
    return load_embedder(FAST_EMBEDDER, models_dir=models_dir, num_threads=1)


@pytest.fixture(scope="module")
def indexes(embedder, tmp_path_factory):
    root = tmp_path_factory.mktemp("indexes")
    built = []
    for name, passages in (("kb1", PASSAGES_KB1), ("kb2", PASSAGES_KB2)):
        index = KBIndex.open(root / name, embedder.dim)
        texts = list(passages.values())
        index.upsert(np.array(list(passages), dtype=np.int64), embedder.embed_documents(texts), texts)
        built.append(index)
    return built


def test_finds_the_chinese_and_english_answers_first(indexes, embedder):
    zh = retrieve(Query("如何备份数据？", top_k=3), indexes=indexes, embedder=embedder, config=RetrieveConfig())
    en = retrieve(Query("How long must a password be?", top_k=3), indexes=indexes, embedder=embedder,
                  config=RetrieveConfig())
    assert zh[0].chunk_id == 101 and en[0].chunk_id == 104
    assert zh[0].dense_rank == 1 and zh[0].bm25_rank == 1
    assert len(zh) == 3 and zh[0].score > zh[1].score


def test_searches_every_index_of_the_query(indexes, embedder):
    hits = retrieve(Query("上传哪些格式的文档？", top_k=2), indexes=indexes, embedder=embedder, config=RetrieveConfig())
    assert hits[0].chunk_id == 201


def test_allowed_ids_restrict_results(indexes, embedder):
    hits = retrieve(
        Query("如何备份数据？", top_k=5, allowed_chunk_ids=np.array([102, 202], dtype=np.int64)),
        indexes=indexes, embedder=embedder, config=RetrieveConfig(),
    )
    assert {h.chunk_id for h in hits} == {102, 202}


def test_dense_score_is_the_cosine_even_for_bm25_only_hits(indexes, embedder):
    config = RetrieveConfig(dense_weight=0.0)
    hits = retrieve(Query("backups 文件夹", top_k=1), indexes=indexes, embedder=embedder, config=config)
    expected = float(embedder.embed_documents([PASSAGES_KB1[101]])[0] @ embedder.embed_query("backups 文件夹"))
    assert hits[0].chunk_id == 101 and hits[0].dense_score == pytest.approx(expected, abs=1e-4)


def test_an_off_topic_question_scores_lower_than_an_on_topic_one(indexes, embedder):
    on = retrieve(Query("如何备份数据？", top_k=1), indexes=indexes, embedder=embedder, config=RetrieveConfig())
    off = retrieve(Query("珠穆朗玛峰有多高？", top_k=1), indexes=indexes, embedder=embedder, config=RetrieveConfig())
    assert on[0].dense_score > off[0].dense_score
