"""Optional second stage: a cross-encoder reads (question, chunk text) pairs and reorders the head of
the fused ranking.

No reranker ships with Zhiku (no weights we may redistribute): an admin points `reranker_path` at a
local sentence-transformers / transformers folder. Only safetensors weights are accepted, so a
folder can never run pickled code on load, and nothing is fetched from a hub.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from rag.retrieve import ScoredChunk

if TYPE_CHECKING:
    from sentence_transformers import CrossEncoder

SAFETENSORS_FILES = ("model.safetensors", "model.safetensors.index.json")


class RerankerLoadError(Exception):
    """The configured reranker folder is missing, incomplete or cannot be loaded."""


def check_reranker_folder(folder: Path) -> None:
    """Cheap checks that name what is wrong before any model library is imported."""
    if not folder.is_dir():
        raise RerankerLoadError(f"reranker folder {folder} does not exist")
    if not (folder / "config.json").is_file():
        raise RerankerLoadError(f"reranker folder {folder} has no config.json (not a transformers model)")
    if not any((folder / name).is_file() for name in SAFETENSORS_FILES):
        raise RerankerLoadError(
            f"reranker folder {folder} has no {' or '.join(SAFETENSORS_FILES)}: only safetensors weights are "
            "loaded (pickled pytorch_model.bin files can run code); convert the model with save_pretrained()")


def load_reranker(folder: Path, *, max_length: int = 512) -> CrossEncoder:
    """A CrossEncoder from a local folder, or RerankerLoadError saying why not."""
    check_reranker_folder(folder)
    from sentence_transformers import CrossEncoder

    try:
        # use_safetensors=True makes transformers raise instead of falling back to a pickled .bin.
        return CrossEncoder(str(folder), device="cpu", local_files_only=True, max_length=max_length,
                            model_kwargs={"use_safetensors": True})
    except Exception as exc:  # noqa: BLE001 — any failure of a third-party loader means the same to the admin
        raise RerankerLoadError(f"cannot load the reranker at {folder}: {exc}") from exc


def rerank(
    query_text: str,
    hits: Sequence[ScoredChunk],
    texts_of: Callable[[list[int]], Mapping[int, str]],
    model: CrossEncoder,
    top_n: int,
) -> list[ScoredChunk]:
    """The first `top_n` hits reordered by the model's score (kept as `rerank_score`), then the rest.

    `texts_of(chunk_ids)` returns the texts it has; a hit without text cannot be scored and keeps
    its place after the scored ones (the caller drops it anyway: it was deleted after indexing).
    Equal scores keep the fused order (a stable sort), so a degenerate model changes nothing.
    """
    head, tail = list(hits[:top_n]), list(hits[top_n:])
    texts = texts_of([hit.chunk_id for hit in head])
    scorable = [hit for hit in head if hit.chunk_id in texts]
    if not scorable:
        return list(hits)
    scores = model.predict([(query_text, texts[hit.chunk_id]) for hit in scorable],
                           show_progress_bar=False, convert_to_numpy=True)
    scored = [replace(hit, rerank_score=float(score)) for hit, score in zip(scorable, scores)]
    scored.sort(key=lambda hit: -hit.rerank_score)
    unscored = [hit for hit in head if hit.chunk_id not in texts]
    return scored + unscored + tail
