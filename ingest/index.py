"""One knowledge base's search index on disk: FAISS (dense) + the words BM25 ranks by (sparse).

Folder layout (no pickle anywhere):

    manifest.json        {"format", "version", "dim", "num_chunks", "data": "v000007"}
    v000007/dense.faiss  IndexIDMap2(IndexFlatIP(dim)), FAISS ids = chunk ids (int64)
    v000007/words.json   {"ids": [...], "words": [[...], ...]}  BM25 tokens per chunk

A save writes a complete new `vNNNNNN/` folder (fsynced), then atomically replaces manifest.json
to point at it, so a reader opening the folder at any moment sees one consistent version. The
previous data folder is kept for readers that read the old manifest a moment ago; older ones go.
bm25s cannot add or remove documents, and its own save format is not needed: the model is rebuilt
in memory from the stored words on the first BM25 search after a change (milliseconds per
thousand chunks).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import bm25s
import faiss
import numpy as np

from rag.tokenize import WordTokenizer, word_tokenizer

FORMAT = 1
MANIFEST = "manifest.json"
DENSE_FILE = "dense.faiss"
WORDS_FILE = "words.json"


class KBIndexError(Exception):
    pass


class IndexDimensionMismatch(KBIndexError):
    pass


class IndexCorrupt(KBIndexError):
    pass


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json_synced(path: Path, payload: dict) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(payload, f, ensure_ascii=False)
        f.flush()
        os.fsync(f.fileno())


def _as_ids(ids: np.ndarray | list[int]) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(ids, dtype=np.int64).reshape(-1))


class KBIndex:
    def __init__(self, folder: Path, dim: int, tokenizer: WordTokenizer) -> None:
        self.folder = folder
        self.dim = dim
        self.version = 0
        self._tokenizer = tokenizer
        self._dense = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self._words: dict[int, list[str]] = {}
        self._bm25: bm25s.BM25 | None = None
        self._bm25_ids = np.zeros(0, dtype=np.int64)

    @classmethod
    def open(cls, folder: Path, dim: int, *, cache_dir: Path | None = None) -> KBIndex:
        """Open the saved index in `folder`, or an empty one when nothing was saved there yet.

        `cache_dir` holds jieba's dictionary cache; by default the parent of `folder` (the folder of
        all knowledge-base indexes), which is ours, unlike the system temp folder jieba would pick.
        """
        folder = Path(folder)
        index = cls(folder, dim, word_tokenizer(Path(cache_dir or folder.parent)))
        manifest_path = folder / MANIFEST
        if not manifest_path.exists():
            return index
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        if manifest.get("format") != FORMAT:
            raise IndexCorrupt(f"{manifest_path}: unknown format {manifest.get('format')!r}")
        if manifest["dim"] != dim:
            raise IndexDimensionMismatch(
                f"{folder} holds {manifest['dim']}-dim vectors but the embedder makes {dim}: "
                "reindex the knowledge base"
            )
        data = folder / manifest["data"]
        index._dense = faiss.read_index(str(data / DENSE_FILE))
        stored = json.loads((data / WORDS_FILE).read_text(encoding="utf-8"))
        index._words = dict(zip((int(i) for i in stored["ids"]), stored["words"]))
        if index._dense.ntotal != len(index._words):
            raise IndexCorrupt(f"{data}: {index._dense.ntotal} vectors but {len(index._words)} word lists")
        index.version = int(manifest["version"])
        return index

    def __len__(self) -> int:
        return int(self._dense.ntotal)

    def upsert(self, ids: np.ndarray, vectors: np.ndarray, texts: list[str]) -> None:
        """Add chunks, replacing any chunk already stored under the same id."""
        ids = _as_ids(ids)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (len(ids), self.dim) or len(texts) != len(ids):
            raise ValueError(
                f"{len(ids)} ids, vectors of shape {vectors.shape}, {len(texts)} texts (dim {self.dim})"
            )
        if len(np.unique(ids)) != len(ids):
            raise ValueError("duplicate chunk ids in one upsert")
        self.remove(ids)
        self._dense.add_with_ids(vectors, ids)
        for chunk_id, text in zip(ids.tolist(), texts):
            self._words[chunk_id] = self._tokenizer.words(text)
        self._bm25 = None

    def remove(self, ids: np.ndarray) -> None:
        ids = _as_ids(ids)
        if not len(ids):
            return
        self._dense.remove_ids(faiss.IDSelectorBatch(ids))
        for chunk_id in ids.tolist():
            self._words.pop(chunk_id, None)
        self._bm25 = None

    def save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        on_disk = self._manifest_version()
        self.version = max(self.version, on_disk) + 1
        name = f"v{self.version:06d}"
        staging = self.folder / f".staging-{name}-{uuid.uuid4().hex[:8]}"
        staging.mkdir()
        faiss.write_index(self._dense, str(staging / DENSE_FILE))
        _fsync_path(staging / DENSE_FILE)
        ids = list(self._words)
        _write_json_synced(staging / WORDS_FILE, {"ids": ids, "words": [self._words[i] for i in ids]})
        _fsync_path(staging)
        os.replace(staging, self.folder / name)
        manifest = {
            "format": FORMAT, "version": self.version, "dim": self.dim, "num_chunks": len(self), "data": name
        }
        temp_manifest = self.folder / f".{MANIFEST}.{uuid.uuid4().hex[:8]}"
        _write_json_synced(temp_manifest, manifest)
        os.replace(temp_manifest, self.folder / MANIFEST)
        _fsync_path(self.folder)
        self._drop_old_data(keep={name, f"v{on_disk:06d}"})

    def search_dense(
        self, qvec: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        """Top-k (chunk id, cosine) among `allowed_ids` (all chunks when None), filtered inside FAISS."""
        if k <= 0 or len(self) == 0 or (allowed_ids is not None and len(allowed_ids) == 0):
            return []
        query = np.ascontiguousarray(np.asarray(qvec, dtype=np.float32).reshape(1, self.dim))
        k = min(k, len(self))
        if allowed_ids is None:
            scores, ids = self._dense.search(query, k)
        else:
            selector = faiss.IDSelectorBatch(_as_ids(allowed_ids))
            scores, ids = self._dense.search(query, k, params=faiss.SearchParameters(sel=selector))
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i != -1]

    def dense_scores(self, qvec: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Cosine of the query with each stored chunk in `ids` (all must be stored here)."""
        ids = _as_ids(ids)
        if not len(ids):
            return np.zeros(0, dtype=np.float32)
        vectors = self._dense.reconstruct_batch(ids)
        return vectors @ np.asarray(qvec, dtype=np.float32).reshape(self.dim)

    def contains(self, chunk_id: int) -> bool:
        return int(chunk_id) in self._words

    def search_bm25(
        self, text: str, k: int, allowed_ids: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        """Top-k (chunk id, BM25 score > 0) among `allowed_ids`: all chunks scored, masked, then ranked."""
        words = self._tokenizer.words(text)
        if k <= 0 or not words or len(self) == 0:
            return []
        model = self._bm25_model()
        scores = model.get_scores(words)
        if allowed_ids is not None:
            scores = np.where(np.isin(self._bm25_ids, _as_ids(allowed_ids)), scores, 0.0)
        candidates = np.flatnonzero(scores > 0)
        if len(candidates) > k:
            candidates = candidates[np.argpartition(-scores[candidates], k - 1)[:k]]
        ranked = candidates[np.argsort(-scores[candidates], kind="stable")]
        return [(int(self._bm25_ids[i]), float(scores[i])) for i in ranked]

    def _bm25_model(self) -> bm25s.BM25:
        if self._bm25 is None:
            self._bm25_ids = np.fromiter(self._words, dtype=np.int64, count=len(self._words))
            model = bm25s.BM25()
            model.index([self._words[i] for i in self._bm25_ids.tolist()], show_progress=False)
            self._bm25 = model
        return self._bm25

    def _manifest_version(self) -> int:
        path = self.folder / MANIFEST
        return int(json.loads(path.read_text(encoding="utf-8"))["version"]) if path.exists() else 0

    def _drop_old_data(self, keep: set[str]) -> None:
        for child in self.folder.iterdir():
            is_data = child.name.startswith("v") and child.name[1:].isdigit()
            if child.is_dir() and is_data and child.name not in keep:
                shutil.rmtree(child, ignore_errors=True)
