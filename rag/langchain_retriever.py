"""Our retrieval (dense + BM25 + fusion, ACL filter) as a LangChain `BaseRetriever`.

For customers who compose LangChain pipelines: `ZhikuRetriever(indexes=..., embedder=..., lookup=...)`
ranks exactly as `rag.retrieve.retrieve` does. The index stores vectors and words, not chunk texts,
so `lookup` turns the ranked chunk ids into LangChain Documents (the API reads them from the chunk
table; the evaluation from its own KB). Scores and ranks go into each Document's metadata.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from ingest.embed import Embedder
from ingest.index import KBIndex
from rag.retrieve import Query, RetrieveConfig, retrieve

# chunk ids → Documents; an id missing from the answer (e.g. deleted since) is left out of the results.
ChunkLookup = Callable[[Sequence[int]], dict[int, Document]]


class ZhikuRetriever(BaseRetriever):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    indexes: Sequence[KBIndex]
    embedder: Embedder
    lookup: ChunkLookup
    k: int = 5
    config: RetrieveConfig = RetrieveConfig()
    # None: every chunk of the indexes; otherwise only these (the caller's ACL result).
    allowed_chunk_ids: np.ndarray | None = None

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, k: int | None = None, **_: Any
    ) -> list[Document]:
        hits = retrieve(
            Query(query, top_k=self.k if k is None else k, allowed_chunk_ids=self.allowed_chunk_ids),
            indexes=self.indexes, embedder=self.embedder, config=self.config,
        )
        found = self.lookup([hit.chunk_id for hit in hits])
        return [
            Document(
                page_content=found[hit.chunk_id].page_content,
                metadata={
                    **found[hit.chunk_id].metadata,
                    "chunk_id": hit.chunk_id,
                    "score": hit.score,
                    "dense_score": hit.dense_score,
                    "dense_rank": hit.dense_rank,
                    "bm25_rank": hit.bm25_rank,
                },
            )
            for hit in hits
            if hit.chunk_id in found
        ]
