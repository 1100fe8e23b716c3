"""Ingestion jobs: the only module that knows about Celery, the database and progress.

A job ingests one (document, version). The Job row is the source of truth, not the broker: the
embedded SQLAlchemy transport never redelivers a task whose worker died and Redis does so only after
its visibility timeout, so `requeue_stale_jobs` re-sends jobs whose heartbeat stopped. Every step is
idempotent (chunk ids are a hash of document, version and ordinal; the index upserts), so a duplicate
delivery or a re-run after a crash produces each chunk exactly once.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from functools import cached_property
from pathlib import Path

import numpy as np
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.db import session_scope
from app.models import Chunk, Document, DocumentState, Job, JobState, WorkerHeartbeat, utcnow
from app.services.audit import record
from app.services.sensitive import count_kinds, ingest_protection
from rag.sensitive import Protection
from app.settings import Settings
from ingest.blobs import blob_path
from ingest.chunk import ChunkConfig, ChunkDraft, chunk, chunk_text_for_embedding
from ingest.embed import Embedder, load_embedder
from ingest.extract import ExtractConfig, ExtractionError, IsolatedExtractor
from ingest.ids import chunk_id
from ingest.index import KBIndex
from ingest.locks import index_write_lock

INGEST_TASK = "zhiku.ingest_document"
EMBED_BATCH = 16
HEARTBEAT_EVERY_S = 5.0

log = logging.getLogger(__name__)
Enqueue = Callable[[int, int], None]  # (document_id, version) -> None


class RetryLater(Exception):
    """A transient failure: the job went back to QUEUED and should be delivered again."""

    def __init__(self, countdown_s: float) -> None:
        super().__init__(f"retry in {countdown_s:.0f} s")
        self.countdown_s = countdown_s


def kb_index_dir(settings: Settings, kb_id: int) -> Path:
    return settings.indexes_dir / f"kb-{kb_id}"


def configured_embedder(settings: Settings) -> Embedder:
    """The embedder the settings name; documents and questions must be embedded by the same one."""
    return load_embedder(settings.embedder, models_dir=settings.models_dir, num_threads=settings.embedder_threads or None)


@dataclass
class IngestContext:
    settings: Settings
    session_factory: sessionmaker[Session]
    worker_id: str

    @cached_property
    def extractor(self) -> IsolatedExtractor:
        """One reader process per worker, reused from document to document."""
        return IsolatedExtractor(
            config=ExtractConfig(),
            timeout_s=self.settings.extract_timeout_s,
            max_memory_bytes=self.settings.extract_max_memory_bytes,
        )

    @cached_property
    def embedder(self) -> Embedder:
        return configured_embedder(self.settings)


def run_ingest(ctx: IngestContext, *, document_id: int, version: int) -> None:
    job_id = _claim(ctx, document_id=document_id, version=version)
    if job_id is None:
        return
    stop_heartbeat = _start_heartbeat(ctx, job_id)
    try:
        _pipeline(ctx, job_id=job_id, document_id=document_id, version=version)
    except ExtractionError as exc:
        _finish(ctx, job_id, failed_reason=str(exc))
    except Exception as exc:
        log.exception("ingest of document %s v%s failed", document_id, version)
        attempts = _fail_or_requeue(ctx, job_id, reason=f"{type(exc).__name__}: {exc}")
        if attempts is not None:
            raise RetryLater(countdown_s=min(60.0, 2.0**attempts)) from exc
    finally:
        stop_heartbeat()


def _pipeline(ctx: IngestContext, *, job_id: int, document_id: int, version: int) -> None:
    settings = ctx.settings
    with session_scope(ctx.session_factory) as session:
        doc = session.get(Document, document_id)
        assert doc is not None
        path, kb_id, suffix = blob_path(settings.blobs_dir, doc.sha256), doc.kb_id, Path(doc.filename).suffix

    _set_stage(ctx, job_id, DocumentState.EXTRACTING, 0.05)
    elements = ctx.extractor.extract(path, suffix)

    _set_stage(ctx, job_id, DocumentState.CHUNKING, 0.25)
    embedder = ctx.embedder
    drafts = chunk(
        elements,
        config=ChunkConfig(chunk_tokens=settings.chunk_tokens, overlap_tokens=settings.chunk_overlap_tokens),
        count_tokens=embedder.count_tokens,
    )
    if not drafts:
        raise ExtractionError("the document contains no text to index")
    with session_scope(ctx.session_factory) as session:
        protection = ingest_protection(session, kb_id)
    # Redacted before embedding: a value the ingest policy removes is in neither FAISS, BM25 nor the DB.
    protected = [_protect(draft, protection) for draft in drafts]
    drafts = [draft for draft, _, _ in protected]

    _set_stage(ctx, job_id, DocumentState.EMBEDDING, 0.3)
    texts = [chunk_text_for_embedding(d) for d in drafts]
    vectors = np.zeros((len(texts), embedder.dim), dtype=np.float32)
    for start in range(0, len(texts), EMBED_BATCH):
        vectors[start : start + EMBED_BATCH] = embedder.embed_documents(texts[start : start + EMBED_BATCH])
        _set_stage(ctx, job_id, DocumentState.EMBEDDING, 0.3 + 0.6 * (start + EMBED_BATCH) / len(texts))

    _set_stage(ctx, job_id, DocumentState.INDEXING, 0.92)
    ids = np.array([chunk_id(document_id, version, d.ordinal) for d in drafts], dtype=np.int64)
    index_dir = kb_index_dir(settings, kb_id)
    with index_write_lock(index_dir):
        with session_scope(ctx.session_factory) as session:
            doc = session.get(Document, document_id)
            if doc is None or doc.version != version:
                # Deleted or re-uploaded while we worked; deletion holds the same lock, so nothing leaks.
                job = session.get(Job, job_id)
                if job is not None:
                    job.state = JobState.SUPERSEDED
                return
            old_ids = session.scalars(select(Chunk.id).where(Chunk.document_id == document_id)).all()
        index = KBIndex.open(index_dir, embedder.dim)
        stale = np.setdiff1d(np.array(old_ids, dtype=np.int64), ids)
        if len(stale):
            index.remove(stale)
        index.upsert(ids, vectors, [d.text for d in drafts])
        index.save()
        # The index is saved before the rows commit: a crash in between leaves a job that the sweep
        # re-runs, and the re-run upserts the same ids.
        with session_scope(ctx.session_factory) as session:
            session.execute(delete(Chunk).where(Chunk.document_id == document_id))
            session.add_all(
                Chunk(
                    id=int(cid),
                    document_id=document_id,
                    kb_id=kb_id,
                    version=version,
                    ordinal=d.ordinal,
                    text=d.text,
                    pages=list(d.pages),
                    section_path=list(d.section_path),
                    element_types=list(d.element_types),
                    findings=findings,
                    redacted=bool(actions),
                )
                for cid, (d, findings, actions) in zip(ids, protected)
            )
            _audit_findings(session, kb_id, document_id, version, protected)
            session.execute(
                update(Document).where(Document.id == document_id).values(num_chunks=len(drafts))
            )
    _finish(ctx, job_id)


def _protect(draft: ChunkDraft, protection: Protection) -> tuple[ChunkDraft, dict[str, int], dict[str, int]]:
    """The draft with its text and section titles as the ingest policy stores them (titles are shown
    with every source), its finding counts by kind, and the actions taken by kind."""
    findings, redaction = protection.apply(draft.text)
    titles = [protection.apply(title) for title in draft.section_path]
    taken = [*redaction.actions_taken, *(t for _, title in titles for t in title.actions_taken)]
    actions = dict(Counter(f"{t.kind}:{t.action.value}" for t in taken))
    if actions:
        draft = replace(draft, text=redaction.text, section_path=tuple(title.text for _, title in titles))
    return draft, count_kinds([*findings, *(f for found, _ in titles for f in found)]), actions


def _audit_findings(session: Session, kb_id: int, document_id: int, version: int,
                    protected: list[tuple[ChunkDraft, dict[str, int], dict[str, int]]]) -> None:
    findings: Counter[str] = Counter()
    actions: Counter[str] = Counter()
    for _, chunk_findings, chunk_actions in protected:
        findings.update(chunk_findings)
        actions.update(chunk_actions)
    if findings:
        record(session, "sensitive.ingest", kb_id=kb_id, document_id=document_id, version=version,
               findings=dict(findings), actions=dict(actions))


def _claim(ctx: IngestContext, *, document_id: int, version: int) -> int | None:
    """Take the job for this (document, version), or return None when there is nothing to do."""
    now = utcnow()
    with session_scope(ctx.session_factory) as session:
        job = session.scalars(
            select(Job)
            .where(Job.document_id == document_id, Job.version == version)
            .order_by(Job.id.desc())
            .with_for_update()
        ).first()
        doc = session.get(Document, document_id)
        if job is None or doc is None:
            return None  # deleted meanwhile
        if doc.version != version:
            job.state = JobState.SUPERSEDED
            return None
        if job.state in (JobState.SUCCEEDED, JobState.FAILED, JobState.SUPERSEDED):
            return None  # a duplicate delivery of finished work
        fresh = job.heartbeat_at and now - job.heartbeat_at < timedelta(seconds=ctx.settings.job_stale_after_s)
        if job.state == JobState.RUNNING and fresh and job.worker_id != ctx.worker_id:
            return None  # another live worker holds it
        job.attempts += 1
        if job.attempts > ctx.settings.max_job_attempts:
            reason = f"gave up after {ctx.settings.max_job_attempts} attempts; last error: {job.error or 'worker died'}"
            job.state, job.error = JobState.FAILED, reason
            doc.state, doc.error = DocumentState.FAILED, reason
            return None
        job.state, job.worker_id, job.heartbeat_at = JobState.RUNNING, ctx.worker_id, now
        doc.state, doc.error = DocumentState.EXTRACTING, None
        return job.id


def _set_stage(ctx: IngestContext, job_id: int, stage: DocumentState, progress: float) -> None:
    with session_scope(ctx.session_factory) as session:
        job = session.get(Job, job_id)
        assert job is not None
        job.stage, job.progress, job.heartbeat_at = stage.value, min(progress, 0.99), utcnow()
        doc = session.get(Document, job.document_id)
        if doc is not None:
            doc.state = stage


def _finish(ctx: IngestContext, job_id: int, *, failed_reason: str | None = None) -> None:
    with session_scope(ctx.session_factory) as session:
        job = session.get(Job, job_id)
        assert job is not None
        doc = session.get(Document, job.document_id)
        if failed_reason is None:
            job.state, job.stage, job.progress, job.error = JobState.SUCCEEDED, "indexed", 1.0, None
            if doc is not None:
                doc.state, doc.error = DocumentState.INDEXED, None
        else:
            job.state, job.stage, job.error = JobState.FAILED, "failed", failed_reason
            if doc is not None:
                doc.state, doc.error = DocumentState.FAILED, failed_reason


def _fail_or_requeue(ctx: IngestContext, job_id: int, *, reason: str) -> int | None:
    """Record a transient failure; returns the attempt count if the job should be retried."""
    with session_scope(ctx.session_factory) as session:
        job = session.get(Job, job_id)
        assert job is not None
        job.error = reason
        if job.attempts >= ctx.settings.max_job_attempts:
            job.state, job.stage = JobState.FAILED, "failed"
            doc = session.get(Document, job.document_id)
            if doc is not None:
                doc.state, doc.error = DocumentState.FAILED, reason
            return None
        job.state, job.stage = JobState.QUEUED, "queued"
        return job.attempts


def _start_heartbeat(ctx: IngestContext, job_id: int) -> Callable[[], None]:
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_EVERY_S):
            with session_scope(ctx.session_factory) as session:
                job = session.get(Job, job_id)
                if job is not None and job.state == JobState.RUNNING:
                    job.heartbeat_at = utcnow()

    thread = threading.Thread(target=beat, name=f"heartbeat-job-{job_id}", daemon=True)
    thread.start()

    def stop_and_join() -> None:
        stop.set()
        thread.join()

    return stop_and_join


def requeue_stale_jobs(session_factory: sessionmaker[Session], enqueue: Enqueue, *, stale_after_s: float) -> list[int]:
    """Re-send jobs whose worker died (stale heartbeat) or whose message was lost (queued too long)."""
    cutoff = datetime.now(timezone.utc) - timedelta(seconds=stale_after_s)
    requeued: list[tuple[int, int, int]] = []
    with session_scope(session_factory) as session:
        jobs = session.scalars(
            select(Job).where(
                ((Job.state == JobState.RUNNING) & (Job.heartbeat_at < cutoff))
                | ((Job.state == JobState.QUEUED) & (Job.updated_at < cutoff))
            )
        ).all()
        for job in jobs:
            job.state, job.stage, job.updated_at = JobState.QUEUED, "queued", utcnow()
            requeued.append((job.id, job.document_id, job.version))
    for _job_id, document_id, version in requeued:
        enqueue(document_id, version)
    return [job_id for job_id, _, _ in requeued]


def record_worker_alive(session_factory: sessionmaker[Session], worker_id: str) -> None:
    with session_scope(session_factory) as session:
        beat = session.get(WorkerHeartbeat, worker_id)
        if beat is None:
            session.add(WorkerHeartbeat(worker_id=worker_id, seen_at=utcnow()))
        else:
            beat.seen_at = utcnow()


def any_worker_alive(session_factory: sessionmaker[Session], *, within_s: float) -> bool:
    cutoff = datetime.now(timezone.utc) - timedelta(seconds=within_s)
    with session_scope(session_factory) as session:
        return session.scalar(select(WorkerHeartbeat.worker_id).where(WorkerHeartbeat.seen_at >= cutoff)) is not None
