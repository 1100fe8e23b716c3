"""Content-addressed store for uploaded files: a file's sha256 is its name, so re-uploads cost nothing."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO


class UploadTooLarge(Exception):
    pass


def blob_path(blobs_dir: Path, sha256: str) -> Path:
    return blobs_dir / sha256[:2] / sha256


def store_blob(source: BinaryIO, blobs_dir: Path, *, max_bytes: int) -> tuple[str, int]:
    """Stream `source` into the store; returns (sha256, size). Never holds the whole file in memory."""
    blobs_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    fd, tmp_name = tempfile.mkstemp(dir=blobs_dir, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as out:
            for block in iter(lambda: source.read(1 << 20), b""):
                size += len(block)
                if size > max_bytes:
                    raise UploadTooLarge(f"file is larger than the limit of {max_bytes} bytes")
                digest.update(block)
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        sha256 = digest.hexdigest()
        target = blob_path(blobs_dir, sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp_name, target)
        return sha256, size
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
