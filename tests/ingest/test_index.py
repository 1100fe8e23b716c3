"""KBIndex on real FAISS/JSON files in tmp_path. Random unit vectors: the index is what is tested."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ingest.index import MANIFEST, IndexDimensionMismatch, KBIndex

DIM = 16


def unit_vectors(n: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


TEXTS = [
    "The backup command copies the data directory to a tarball every night.",
    "数据备份：每天夜里把数据目录打包成压缩文件。",
    "Users log in with a password; administrators can reset it.",
    "資料庫遷移使用 Alembic，升級前請先備份。",
    "The embedder turns chunks into vectors.",
]


@pytest.fixture(scope="module")
def jieba_cache(tmp_path_factory):
    """One jieba cache for the module: building it from jieba's dictionary takes seconds."""
    return tmp_path_factory.mktemp("jieba")


def open_index(folder, jieba_cache, dim=DIM):
    return KBIndex.open(folder, dim, cache_dir=jieba_cache)


@pytest.fixture
def index(tmp_path, jieba_cache):
    index = open_index(tmp_path / "kb1", jieba_cache)
    index.upsert(np.arange(1, 6, dtype=np.int64), unit_vectors(5, seed=0), TEXTS)
    return index


def test_save_reopen_round_trip(index, tmp_path, jieba_cache):
    index.save()
    reopened = open_index(tmp_path / "kb1", jieba_cache)
    assert len(reopened) == 5
    query = unit_vectors(5, seed=0)[2]
    assert reopened.search_dense(query, 1)[0][0] == 3
    assert reopened.search_bm25("reset password", 1)[0][0] == 3
    assert json.loads((tmp_path / "kb1" / MANIFEST).read_text())["version"] == 1


def test_reupsert_same_ids_replaces_instead_of_duplicating(index):
    new_vectors = unit_vectors(5, seed=1)
    index.upsert(np.arange(1, 6, dtype=np.int64), new_vectors, TEXTS[::-1])
    assert len(index) == 5
    hits = index.search_dense(new_vectors[0], 5)
    assert sorted(i for i, _ in hits) == [1, 2, 3, 4, 5]
    assert hits[0] == (1, pytest.approx(1.0, abs=1e-5))
    # id 1 now holds the text that id 5 had.
    assert index.search_bm25("embedder vectors", 1)[0][0] == 1


def test_remove_is_gone_from_dense_and_bm25_and_stays_gone_on_disk(index, tmp_path, jieba_cache):
    index.search_bm25("backup", 3)  # build the BM25 model before the change
    index.remove(np.array([1, 2], dtype=np.int64))
    assert len(index) == 3
    assert {i for i, _ in index.search_dense(unit_vectors(5, seed=0)[0], 5)} == {3, 4, 5}
    assert all(i not in (1, 2) for i, _ in index.search_bm25("backup 备份 数据", 5))
    index.save()
    reopened = open_index(tmp_path / "kb1", jieba_cache)
    assert {i for i, _ in reopened.search_dense(unit_vectors(5, seed=0)[0], 5)} == {3, 4, 5}
    assert not reopened.contains(1)


def test_allowed_ids_filter_before_ranking(tmp_path, jieba_cache):
    """The best allowed chunk is found even when hundreds of disallowed chunks rank above it."""
    index = open_index(tmp_path / "kb", jieba_cache)
    query = unit_vectors(1, seed=7)[0]
    near = query + 0.05 * unit_vectors(300, seed=8)  # 300 chunks all closer than the allowed one
    allowed_vector = (query + 0.9 * unit_vectors(1, seed=9)[0])[None, :]
    vectors = np.vstack([near, allowed_vector]).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    texts = ["backup nightly tarball"] * 300 + ["backup once"]
    index.upsert(np.arange(301, dtype=np.int64), vectors, texts)
    allowed = np.array([300, 999], dtype=np.int64)  # 999 does not exist: ignored

    expected_cosine = pytest.approx(float(vectors[300] @ query), abs=1e-5)
    assert index.search_dense(query, 5, allowed) == [(300, expected_cosine)]
    assert [i for i, _ in index.search_bm25("backup", 5, allowed)] == [300]
    assert index.search_dense(query, 5, np.array([], dtype=np.int64)) == []


def test_chinese_bm25_finds_simplified_and_traditional_passages(index):
    assert index.search_bm25("如何备份数据？", 1)[0][0] == 2
    assert index.search_bm25("資料庫遷移", 1)[0][0] == 4


def test_dense_scores_are_cosines_of_stored_vectors(index):
    vectors = unit_vectors(5, seed=0)
    scores = index.dense_scores(vectors[0], np.array([1, 4], dtype=np.int64))
    np.testing.assert_allclose(scores, [1.0, vectors[3] @ vectors[0]], atol=1e-5)


def test_saves_keep_one_consistent_version_and_prune_old_data(index, tmp_path):
    for _ in range(4):
        index.save()
    folder = tmp_path / "kb1"
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["version"] == 4 and manifest["num_chunks"] == 5
    data_dirs = sorted(p.name for p in folder.iterdir() if p.is_dir())
    assert data_dirs == ["v000003", "v000004"]


def test_opening_with_another_dimension_is_a_clear_error(index, tmp_path, jieba_cache):
    index.save()
    with pytest.raises(IndexDimensionMismatch, match="reindex"):
        open_index(tmp_path / "kb1", jieba_cache, DIM * 2)


def test_empty_folder_opens_empty_and_searches_return_nothing(tmp_path, jieba_cache):
    index = open_index(tmp_path / "missing", jieba_cache)
    assert len(index) == 0
    assert index.search_dense(unit_vectors(1, seed=0)[0], 5) == []
    assert index.search_bm25("anything", 5) == []


def test_jieba_cache_stays_in_our_folder(tmp_path):
    KBIndex.open(tmp_path / "indexes" / "kb", DIM, cache_dir=tmp_path / "cache").search_bm25("中文分词", 1)
    assert (tmp_path / "cache" / "jieba.cache").exists()
