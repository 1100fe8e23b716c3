"""A worker killed in the middle of a document: another worker finishes it, and each chunk exists once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.db import make_engine, make_session_factory, session_scope
from app.migrate import upgrade_database
from app.models import Chunk, Document, DocumentState, Job
from app.settings import load_settings
from ingest.index import KBIndex
from ingest.tasks import kb_index_dir
from tests.e2e.conftest import REPO, TEST_EMBEDDER

pytestmark = pytest.mark.services


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "app.cli", "worker"], cwd=REPO, env=env,
                                stdout=out, stderr=subprocess.STDOUT)


def wait_for(predicate, timeout_s: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    pytest.fail(f"timed out waiting for {what}")


def test_killed_worker_is_replaced_and_document_indexed_once(tmp_path: Path, models_dir: Path, evaldata: Path) -> None:
    from app.cli import ingest_paths

    overrides = {
        "data_dir": tmp_path, "models_dir": models_dir, "embedder": TEST_EMBEDDER,
        "job_stale_after_s": 6.0, "job_sweep_interval_s": 1.0,
    }
    settings = load_settings(**overrides)
    upgrade_database(settings)
    factory = make_session_factory(make_engine(settings))
    env = {**os.environ, **{f"ZHIKU_{k.upper()}": str(v) for k, v in overrides.items()}}
    log = tmp_path / "worker.log"

    # Long enough (76 pages, hundreds of chunks) that the worker is mid-way when killed.
    (document_id,) = ingest_paths(settings, factory, [evaldata / "docs/hostile/failure-after-repair.pdf"], "recovery")
    first = start_worker(env, log)

    def job_running() -> bool:
        with session_scope(factory) as session:
            job = session.scalars(select(Job).where(Job.document_id == document_id)).one()
            return job.state.value == "running" and job.stage in ("chunking", "embedding")

    wait_for(job_running, 300, "the first worker to start the job")
    first.send_signal(signal.SIGKILL)
    first.wait()

    second = start_worker(env, log)
    try:
        def indexed() -> bool:
            with session_scope(factory) as session:
                state = session.get(Document, document_id).state
                assert state != DocumentState.FAILED, session.get(Document, document_id).error
                return state == DocumentState.INDEXED

        wait_for(indexed, 1200, "the second worker to finish the document")
    finally:
        second.terminate()
        second.wait(timeout=60)

    with session_scope(factory) as session:
        doc = session.get(Document, document_id)
        job = session.scalars(select(Job).where(Job.document_id == document_id)).one()
        num_rows = session.scalar(select(func.count()).select_from(Chunk).where(Chunk.document_id == document_id))
        pages = {p for (pages,) in session.execute(select(Chunk.pages)) for p in pages}
    assert job.attempts == 2
    assert num_rows == doc.num_chunks > 0
    index = KBIndex.open(kb_index_dir(settings, doc.kb_id), dim=384)
    assert len(index) == num_rows  # no duplicate vectors from the killed attempt
    assert max(pages) == 76
