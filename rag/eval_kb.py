"""A QA set's passages → a knowledge base built by the product's own chunker, embedder and KBIndex."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ingest.chunk import ChunkConfig, chunk, chunk_text_for_embedding
from ingest.elements import Element
from ingest.embed import Embedder
from ingest.ids import chunk_id
from ingest.index import KBIndex

EMBED_BATCH = 32
SAVE_EVERY_BATCHES = 8

Progress = Callable[[str, int, int], None]


def no_progress(_stage: str, _done: int, _total: int) -> None:
    pass


@dataclass
class EvalKB:
    index: KBIndex
    passage_of: dict[int, str] = field(default_factory=dict)  # chunk id → passage id
    text_of: dict[int, str] = field(default_factory=dict)  # chunk id → chunk text (what the model reads)
    section_of: dict[int, str] = field(default_factory=dict)
    document_of: dict[int, str] = field(default_factory=dict)


class VectorCache:
    """Document vectors by (embedder, text) in one .npy + one JSON key list: re-running an evaluation
    (another set, the pooled KB, a generation run) does not re-embed the same chunks. No pickle."""

    def __init__(self, folder: Path | None, embedder_name: str) -> None:
        self._vectors: dict[str, np.ndarray] = {}
        self._paths = None
        if folder is None:
            return
        folder.mkdir(parents=True, exist_ok=True)
        self._paths = (folder / f"{embedder_name}.keys.json", folder / f"{embedder_name}.npy")
        keys_path, vectors_path = self._paths
        if keys_path.exists() and vectors_path.exists():
            keys = json.loads(keys_path.read_text(encoding="utf-8"))
            vectors = np.load(vectors_path, allow_pickle=False)
            if len(keys) == len(vectors):
                self._vectors = dict(zip(keys, vectors))

    def _save(self) -> None:
        if self._paths is None:
            return
        keys_path, vectors_path = self._paths
        keys = list(self._vectors)
        # Vectors first: keys that name more vectors than stored are rejected on load (length check).
        np.save(vectors_path, np.stack([self._vectors[k] for k in keys]), allow_pickle=False)
        keys_path.write_text(json.dumps(keys), encoding="utf-8")

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def embed(self, embedder: Embedder, texts: Sequence[str], progress: Progress, stage: str) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if self.key(t) not in self._vectors))
        for start in range(0, len(missing), EMBED_BATCH):
            batch = missing[start : start + EMBED_BATCH]
            for text, vector in zip(batch, embedder.embed_documents(batch)):
                self._vectors[self.key(text)] = vector
            progress(stage, start + len(batch), len(missing))
            # Saved as it goes: embedding a pooled corpus takes tens of minutes on a busy CPU.
            if (start // EMBED_BATCH) % SAVE_EVERY_BATCHES == SAVE_EVERY_BATCHES - 1:
                self._save()
        if missing:
            self._save()
        if not texts:
            return np.zeros((0, embedder.dim), dtype=np.float32)
        return np.stack([self._vectors[self.key(t)] for t in texts]).astype(np.float32)


def passage_elements(row: dict) -> list[Element]:
    """A passage as the extractor would give it: its title (when it has one) heads its text."""
    title = [Element(row["title"], "Title", title_depth=0)] if row["title"].strip() else []
    return [*title, Element(row["text"], "NarrativeText")]


def build_kb(
    passages: Sequence[dict],
    *,
    embedder: Embedder,
    folder: Path,
    chunk_config: ChunkConfig,
    cache: VectorCache,
    progress: Progress = no_progress,
) -> EvalKB:
    """Chunk, embed and index passages exactly as ingestion does (one passage = one document)."""
    kb = EvalKB(KBIndex.open(folder, embedder.dim))
    ids: list[int] = []
    texts: list[str] = []
    for document_number, row in enumerate(passages, start=1):
        for draft in chunk(passage_elements(row), config=chunk_config, count_tokens=embedder.count_tokens):
            cid = chunk_id(document_number, 1, draft.ordinal)
            ids.append(cid)
            texts.append(chunk_text_for_embedding(draft))
            kb.passage_of[cid] = row["id"]
            kb.text_of[cid] = draft.text
            kb.section_of[cid] = " > ".join(draft.section_path)
            kb.document_of[cid] = row["id"]
        progress("chunk", document_number, len(passages))
    vectors = cache.embed(embedder, texts, progress, "embed")
    kb.index.upsert(np.array(ids, dtype=np.int64), vectors, texts)
    return kb
