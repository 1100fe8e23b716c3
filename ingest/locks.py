"""A cross-process lock per knowledge-base index: exactly one writer changes its files at a time."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def index_write_lock(index_dir: Path) -> Iterator[None]:
    index_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(index_dir.with_suffix(".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
