"""Knowledge bases and documents: upload → blob + rows → queued job; delete; re-index.

Functions that take `user` apply the ACL (app/services/acl.py): what the user may not read does not
exist for them (KB_NOT_FOUND / DOC_NOT_FOUND, never FORBIDDEN, so existence does not leak).
`user=None` is a trusted local caller (the CLI)."""

from __future__ import annotations

from collections.abc import Callable
from typing import BinaryIO

import numpy as np
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.errors import ErrorCode, ZhikuError
from app.models import Chunk, Document, DocumentState, Job, JobState, KnowledgeBase, User
from app.schemas import DocumentPublic, KnowledgeBasePublic
from app.services import acl
from app.settings import Settings
from ingest.blobs import UploadTooLarge, store_blob
from ingest.index import KBIndex
from ingest.locks import index_write_lock
from ingest.tasks import kb_index_dir

Enqueue = Callable[[int, int], None]


def create_kb(session: Session, *, name: str, description: str = "",
              readers: tuple[str, ...] | list[str] = (acl.PUBLIC,)) -> KnowledgeBase:
    """`readers` is the new KB's ACL; by default everyone may read it, as a shared wiki would be."""
    kb = KnowledgeBase(name=name.strip(), description=description)
    session.add(kb)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise ZhikuError(ErrorCode.KB_EXISTS, f"a knowledge base named {name!r} already exists") from None
    acl.set_kb_acl(session, kb.id, readers)
    return kb


def get_kb(session: Session, kb_id: int, user: User | None = None) -> KnowledgeBase:
    kb = session.get(KnowledgeBase, kb_id)
    if kb is None or (user is not None and not acl.can_read_kb(session, user, kb_id)):
        raise ZhikuError(ErrorCode.KB_NOT_FOUND, f"no knowledge base with id {kb_id}")
    return kb


def managed_kb(session: Session, kb_id: int, user: User) -> KnowledgeBase:
    """The KB, when the user may change it (upload, delete, re-index, set ACLs)."""
    kb = get_kb(session, kb_id, user)
    if not acl.can_manage_kb(session, user, kb_id):
        raise ZhikuError(ErrorCode.FORBIDDEN,
                         "only admins and the editors this knowledge base admits may change it")
    return kb


def kb_by_name(session: Session, name: str) -> KnowledgeBase:
    kb = session.scalar(select(KnowledgeBase).where(KnowledgeBase.name == name))
    if kb is None:
        raise ZhikuError(ErrorCode.KB_NOT_FOUND, f"no knowledge base named {name!r}")
    return kb


def list_kbs(session: Session, user: User | None = None) -> list[KnowledgeBasePublic]:
    """The KBs the user may read, each with the number of documents the user may read in it."""
    readable = None if user is None else acl.readable_kb_ids(session, user)
    kbs = [kb for kb in session.scalars(select(KnowledgeBase).order_by(KnowledgeBase.id))
           if readable is None or kb.id in readable]
    if user is None:
        counts = dict(session.execute(select(Document.kb_id, func.count()).group_by(Document.kb_id)).all())
    else:
        counts = {kb.id: len(acl.readable_document_ids(session, user, kb.id)) for kb in kbs}
    return [
        KnowledgeBasePublic(id=kb.id, name=kb.name, description=kb.description, num_documents=counts.get(kb.id, 0))
        for kb in kbs
    ]


def upload_document(
    session: Session, settings: Settings, *, kb_id: int, filename: str, content: BinaryIO
) -> tuple[Document, Job | None]:
    """Store the file and queue its ingestion. Same name + same bytes is a no-op; new bytes are a new version."""
    get_kb(session, kb_id)
    name = filename.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if not name:
        raise ZhikuError(ErrorCode.BAD_REQUEST, "the uploaded file has no name")
    try:
        sha256, size = store_blob(content, settings.blobs_dir, max_bytes=settings.max_upload_bytes)
    except UploadTooLarge as exc:
        raise ZhikuError(ErrorCode.UPLOAD_TOO_LARGE, f"{name}: {exc}") from None
    doc = session.scalar(select(Document).where(Document.kb_id == kb_id, Document.filename == name))
    if doc is not None and doc.sha256 == sha256 and doc.state != DocumentState.FAILED:
        return doc, None
    if doc is None:
        doc = Document(kb_id=kb_id, filename=name, size_bytes=size, sha256=sha256, version=1)
        session.add(doc)
    else:
        doc.version += 1
        doc.sha256, doc.size_bytes = sha256, size
    doc.state, doc.error = DocumentState.QUEUED, None
    session.flush()
    job = Job(document_id=doc.id, version=doc.version, state=JobState.QUEUED)
    session.add(job)
    session.flush()
    return doc, job


def get_document(session: Session, document_id: int, user: User | None = None) -> Document:
    doc = session.get(Document, document_id)
    if doc is None or (user is not None and not acl.can_read_document(session, user, document_id)):
        raise ZhikuError(ErrorCode.DOC_NOT_FOUND, f"no document with id {document_id}")
    return doc


def managed_document(session: Session, document_id: int, user: User) -> Document:
    """The document, when the user may read it and change its knowledge base."""
    doc = get_document(session, document_id, user)
    managed_kb(session, doc.kb_id, user)
    return doc


def latest_job(session: Session, document_id: int) -> Job | None:
    return session.scalars(select(Job).where(Job.document_id == document_id).order_by(Job.id.desc())).first()


def document_public(session: Session, doc: Document) -> DocumentPublic:
    job = latest_job(session, doc.id)
    progress = 1.0 if doc.state == DocumentState.INDEXED else (job.progress if job else 0.0)
    return DocumentPublic(
        id=doc.id, kb_id=doc.kb_id, filename=doc.filename, size_bytes=doc.size_bytes, sha256=doc.sha256,
        version=doc.version, state=doc.state.value, error=doc.error, num_chunks=doc.num_chunks,
        progress=progress, job_id=job.id if job else None, created_at=doc.created_at, updated_at=doc.updated_at,
    )


def list_documents(session: Session, kb_id: int, user: User | None = None) -> list[DocumentPublic]:
    get_kb(session, kb_id, user)
    docs = session.scalars(select(Document).where(Document.kb_id == kb_id).order_by(Document.id)).all()
    if user is not None:
        readable = acl.readable_document_ids(session, user, kb_id)
        docs = [d for d in docs if d.id in readable]
    return [document_public(session, d) for d in docs]


def preview(session: Session, doc: Document, *, max_chunks: int) -> list[Chunk]:
    """The document's first chunks, as stored (after ingest redaction)."""
    return list(session.scalars(select(Chunk).where(Chunk.document_id == doc.id).order_by(Chunk.ordinal)
                                .limit(max_chunks)))


def delete_document(session: Session, settings: Settings, document_id: int, *, dim: int) -> None:
    """Remove a document's vectors, BM25 entries and rows. The blob stays: other documents may share it."""
    doc = get_document(session, document_id)
    index_dir = kb_index_dir(settings, doc.kb_id)
    ids = np.array(session.scalars(select(Chunk.id).where(Chunk.document_id == document_id)).all(), dtype=np.int64)
    if len(ids):
        with index_write_lock(index_dir):
            index = KBIndex.open(index_dir, dim)
            index.remove(ids)
            index.save()
    session.execute(delete(Chunk).where(Chunk.document_id == document_id))
    session.execute(delete(Job).where(Job.document_id == document_id))
    session.delete(doc)


def reindex_document(session: Session, document_id: int) -> Job:
    doc = get_document(session, document_id)
    doc.version += 1  # a new version: the old chunks are replaced when the new job indexes
    doc.state, doc.error = DocumentState.QUEUED, None
    job = Job(document_id=doc.id, version=doc.version, state=JobState.QUEUED)
    session.add(job)
    session.flush()
    return job


def get_job(session: Session, job_id: int, user: User | None = None) -> Job:
    job = session.get(Job, job_id)
    if job is None or (user is not None and not acl.can_read_document(session, user, job.document_id)):
        raise ZhikuError(ErrorCode.JOB_NOT_FOUND, f"no job with id {job_id}")
    return job
