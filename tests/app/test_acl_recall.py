"""An ACL that admits 1% of 100k chunks still yields the best k permitted chunks: the permitted ids
come from SQL (app/services/acl.py over real rows), the search from a real KBIndex read back from
its files, and recall is measured against exact search over the permitted vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import insert

from app.db import make_engine, make_session_factory, session_scope
from app.migrate import upgrade_database
from app.models import Chunk, Document, Role, User
from app.services import acl, documents, users
from app.settings import load_settings
from ingest.index import KBIndex

pytestmark = pytest.mark.services
NUM_DOCUMENTS, CHUNKS_PER_DOCUMENT, DIM, TOP_K = 1000, 100, 64, 10


def unit_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    rows = rng.standard_normal((n, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_one_percent_acl_over_100k_chunks_keeps_recall(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    settings = load_settings(data_dir=tmp_path)
    upgrade_database(settings)
    factory = make_session_factory(make_engine(settings))
    readable_docs = set(rng.choice(NUM_DOCUMENTS, size=NUM_DOCUMENTS // 100, replace=False).tolist())
    with session_scope(factory) as session:
        kb = documents.create_kb(session, name="big", readers=[])  # admins only, but for the grants below
        reader = users.create_user(session, username="reader", password="reader-password", role=Role.EMPLOYEE)
        users.create_group(session, "few")
        users.add_member(session, "few", "reader")
        session.execute(insert(Document), [
            {"id": d + 1, "kb_id": kb.id, "filename": f"doc-{d}.txt", "size_bytes": 1, "sha256": "0" * 64}
            for d in range(NUM_DOCUMENTS)])
        session.execute(insert(Chunk), [
            {"id": d * CHUNKS_PER_DOCUMENT + c, "document_id": d + 1, "kb_id": kb.id, "version": 1, "ordinal": c,
             "text": ""} for d in range(NUM_DOCUMENTS) for c in range(CHUNKS_PER_DOCUMENT)])
        for d in readable_docs:
            acl.set_document_acl(session, d + 1, ["group:few"])
        kb_id, reader_id = kb.id, reader.id

    ids = np.arange(NUM_DOCUMENTS * CHUNKS_PER_DOCUMENT, dtype=np.int64)
    vectors = unit_rows(rng, len(ids))
    folder = tmp_path / "indexes" / "kb-big"
    index = KBIndex.open(folder, DIM)
    index.upsert(ids, vectors, [""] * len(ids))
    index.save()
    index = KBIndex.open(folder, DIM)
    assert len(index) == len(ids)

    with session_scope(factory) as session:
        allowed = acl.allowed_chunk_ids(session, session.get(User, reader_id), [kb_id])
    expected = {d * CHUNKS_PER_DOCUMENT + c for d in readable_docs for c in range(CHUNKS_PER_DOCUMENT)}
    assert set(allowed.tolist()) == expected and len(allowed) == len(ids) // 100

    allowed_vectors = vectors[allowed]
    recalls = []
    for query in unit_rows(rng, 50):
        found = [i for i, _ in index.search_dense(query, TOP_K, allowed)]
        assert set(found) <= expected
        exact = allowed[np.argsort(-(allowed_vectors @ query))[:TOP_K]]
        recalls.append(len(set(found) & set(exact.tolist())) / TOP_K)
    assert np.mean(recalls) >= 0.95, recalls
