"""Retrieval under an ACL that admits 1% of 1M chunks: recall of the filtered search against exact
search over the permitted vectors, and its latency next to an unfiltered search in the same run.

    python bench/acl_filter.py [--chunks 1000000] [--dim 768] [--queries 100] [--top-k 10]

Setup: a SQLite database (in a temporary folder) with 10,000 documents of 100 chunks each in one
knowledge base readable by admins only, and 1% of the documents granted to a group by their own ACL
(app/services/acl.py decides what a member of it may read, in SQL, as for every question). A real
KBIndex (FAISS IndexIDMap2 over IndexFlatIP, as ingest builds it) holds random unit vectors of the
default embedder's dimension (768). Per query, side by side: the unfiltered dense search, the
dense search restricted by the ACL's ids (IDSelectorBatch inside FAISS, as rag/retrieve.py does),
and exact top-k over the permitted vectors with numpy. BM25 is not measured: it scores every chunk
and masks the scores to the permitted ids before its top-k, so its filter is exact by construction.
Prints a markdown table and writes bench/results/acl_filter.json. Never asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sqlalchemy import insert  # noqa: E402

from app.db import make_engine, make_session_factory, session_scope  # noqa: E402
from app.migrate import upgrade_database  # noqa: E402
from app.models import Chunk, Document, Role, User  # noqa: E402
from app.services import acl, documents, users  # noqa: E402
from app.settings import load_settings  # noqa: E402
from ingest.index import KBIndex  # noqa: E402

RESULTS = REPO / "bench" / "results" / "acl_filter.json"
CHUNKS_PER_DOCUMENT = 100
BUILD_BATCH = 100_000
SEED = 0


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    rows = rng.standard_normal((n, dim), dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def build_database(data_dir: Path, num_documents: int, granted: set[int]) -> tuple[object, int, int]:
    settings = load_settings(data_dir=data_dir)
    upgrade_database(settings)
    factory = make_session_factory(make_engine(settings))
    with session_scope(factory) as session:
        kb = documents.create_kb(session, name="bench", readers=[])
        reader = users.create_user(session, username="reader", password="reader-password", role=Role.EMPLOYEE)
        users.create_group(session, "granted")
        users.add_member(session, "granted", "reader")
        session.execute(insert(Document), [
            {"id": d + 1, "kb_id": kb.id, "filename": f"doc-{d}.txt", "size_bytes": 1, "sha256": "0" * 64}
            for d in range(num_documents)])
        for start in range(0, num_documents, 1000):
            session.execute(insert(Chunk), [
                {"id": d * CHUNKS_PER_DOCUMENT + c, "document_id": d + 1, "kb_id": kb.id, "version": 1,
                 "ordinal": c, "text": ""}
                for d in range(start, min(start + 1000, num_documents)) for c in range(CHUNKS_PER_DOCUMENT)])
        for d in granted:
            acl.set_document_acl(session, d + 1, ["group:granted"])
        return factory, kb.id, reader.id


def percentile_ms(samples: list[float], q: float) -> float:
    return float(np.percentile(np.array(samples) * 1000, q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--allowed-share", type=float, default=0.01)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--top-k", type=int, default=10)
    args = parser.parse_args()
    rng = np.random.default_rng(SEED)
    num_documents = args.chunks // CHUNKS_PER_DOCUMENT
    granted = set(rng.choice(num_documents, size=max(1, round(num_documents * args.allowed_share)),
                             replace=False).tolist())
    expected = np.array(sorted(d * CHUNKS_PER_DOCUMENT + c for d in granted
                               for c in range(CHUNKS_PER_DOCUMENT)), dtype=np.int64)

    with tempfile.TemporaryDirectory(prefix="zhiku-acl-bench-") as tmp:
        started = time.perf_counter()
        factory, kb_id, reader_id = build_database(Path(tmp), num_documents, granted)
        print(f"database: {num_documents * CHUNKS_PER_DOCUMENT:,} chunk rows "
              f"in {time.perf_counter() - started:.0f} s", file=sys.stderr)

        started = time.perf_counter()
        index = KBIndex.open(Path(tmp) / "index", args.dim)
        allowed_vectors = np.zeros((len(expected), args.dim), dtype=np.float32)
        for start in range(0, args.chunks, BUILD_BATCH):
            ids = np.arange(start, min(start + BUILD_BATCH, args.chunks), dtype=np.int64)
            vectors = unit_rows(rng, len(ids), args.dim)
            index.upsert(ids, vectors, [""] * len(ids))
            here = np.searchsorted(expected, ids[0]), np.searchsorted(expected, ids[-1], side="right")
            allowed_vectors[here[0]:here[1]] = vectors[expected[here[0]:here[1]] - start]
        print(f"index: {len(index):,} vectors in {time.perf_counter() - started:.0f} s", file=sys.stderr)

        acl_s, unfiltered_s, filtered_s, recalls = [], [], [], []
        for query in unit_rows(rng, args.queries, args.dim):
            t0 = time.perf_counter()
            with session_scope(factory) as session:
                allowed = acl.allowed_chunk_ids(session, session.get(User, reader_id), [kb_id])
            t1 = time.perf_counter()
            index.search_dense(query, args.top_k)
            t2 = time.perf_counter()
            found = [i for i, _ in index.search_dense(query, args.top_k, allowed)]
            t3 = time.perf_counter()
            acl_s.append(t1 - t0)
            unfiltered_s.append(t2 - t1)
            filtered_s.append(t3 - t2)
            exact = expected[np.argsort(-(allowed_vectors @ query))[: args.top_k]]
            recalls.append(len(set(found) & set(exact.tolist())) / args.top_k)
        assert np.array_equal(np.sort(allowed), expected), "the ACL admitted other chunks than granted"

    rows = [
        ("ACL → allowed ids (SQL)", acl_s),
        ("dense, unfiltered", unfiltered_s),
        ("dense, ACL-filtered", filtered_s),
        ("ACL + filtered dense", [a + f for a, f in zip(acl_s, filtered_s)]),
    ]
    result = {
        "chunks": args.chunks, "dim": args.dim, "allowed_chunks": int(len(expected)), "queries": args.queries,
        "top_k": args.top_k, "recall_at_k_vs_exact_allowed": float(np.mean(recalls)),
        "min_recall": float(np.min(recalls)),
        "latency_ms": {name: {"p50": percentile_ms(s, 50), "p95": percentile_ms(s, 95)} for name, s in rows},
        "filtered_over_unfiltered_p50": float(np.median(filtered_s) / np.median(unfiltered_s)),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared, noisy)",
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"\n{args.chunks:,} chunks × {args.dim} dims, ACL admits {len(expected):,} "
          f"({len(expected) / args.chunks:.1%}), top-{args.top_k}, {args.queries} queries\n")
    print("| step | p50 ms | p95 ms |\n|---|---:|---:|")
    for name, samples in rows:
        print(f"| {name} | {percentile_ms(samples, 50):.1f} | {percentile_ms(samples, 95):.1f} |")
    print(f"\nrecall@{args.top_k} of the filtered search vs exact search over the permitted chunks: "
          f"{result['recall_at_k_vs_exact_allowed']:.3f} (min {result['min_recall']:.2f}); "
          f"filtered / unfiltered p50 latency: {result['filtered_over_unfiltered_p50']:.2f}")


if __name__ == "__main__":
    main()
