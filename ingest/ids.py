"""The one place chunk identities are computed."""

from __future__ import annotations

import hashlib


def chunk_id(document_id: int, version: int, ordinal: int) -> int:
    """Deterministic 63-bit id (a valid FAISS id and SQL BIGINT): a retried job overwrites, never appends."""
    digest = hashlib.blake2b(f"{document_id}:{version}:{ordinal}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & ((1 << 63) - 1)
