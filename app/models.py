"""SQLAlchemy 2.0 typed tables: users, groups and tokens, knowledge bases and documents with their
ACLs, chunks, ingestion jobs, sensitive-content terms and policies, the audit log, answer feedback and
failed-login counters."""

from __future__ import annotations

import enum
from datetime import datetime, timezone

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on every backend: SQLite would hand back naive datetimes."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        return value.astimezone(timezone.utc) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value


class Base(DeclarativeBase):
    pass


class Role(str, enum.Enum):
    ADMIN = "admin"
    EDITOR = "editor"
    EMPLOYEE = "employee"


class DocumentState(str, enum.Enum):
    QUEUED = "queued"
    EXTRACTING = "extracting"
    CHUNKING = "chunking"
    EMBEDDING = "embedding"
    INDEXING = "indexing"
    INDEXED = "indexed"
    FAILED = "failed"


class JobState(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SUPERSEDED = "superseded"  # a newer version of the document was uploaded before this job finished


def _enum(cls: type[enum.Enum]) -> Enum:
    return Enum(cls, values_callable=lambda e: [m.value for m in e], native_enum=False, length=16)


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(128), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[Role] = mapped_column(_enum(Role), default=Role.EMPLOYEE)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ApiToken(Base):
    __tablename__ = "api_tokens"
    # Only a hash of the bearer token is stored: a leaked database does not leak sessions.
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    user: Mapped[User] = relationship(lazy="joined")


class Group(Base):
    __tablename__ = "groups"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class GroupMember(Base):
    __tablename__ = "group_members"
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True,
                                         index=True)


class KnowledgeBase(Base):
    __tablename__ = "knowledge_bases"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Document(Base):
    __tablename__ = "documents"
    __table_args__ = (UniqueConstraint("kb_id", "filename"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kb_id: Mapped[int] = mapped_column(ForeignKey("knowledge_bases.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(String(500))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))  # names the blob in the content-addressed store
    # Bumped when different content is uploaded under the same name; chunks and jobs belong to one version.
    version: Mapped[int] = mapped_column(Integer, default=1)
    state: Mapped[DocumentState] = mapped_column(_enum(DocumentState), default=DocumentState.QUEUED)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    num_chunks: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class KnowledgeBaseAcl(Base):
    """One principal that may read a knowledge base: `user:<name>`, `group:<name>` or `public`.
    Principals are names, not ids, so an ACL can name a group or an OIDC/LDAP user before they exist."""

    __tablename__ = "kb_acl"
    kb_id: Mapped[int] = mapped_column(ForeignKey("knowledge_bases.id", ondelete="CASCADE"), primary_key=True)
    principal: Mapped[str] = mapped_column(String(200), primary_key=True, index=True)


class DocumentAcl(Base):
    """A document with at least one row here has its own ACL; without rows it inherits its KB's."""

    __tablename__ = "document_acl"
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), primary_key=True)
    principal: Mapped[str] = mapped_column(String(200), primary_key=True, index=True)


class Chunk(Base):
    __tablename__ = "chunks"
    # Deterministic (document, version, ordinal) hash, also the FAISS id: re-running a job overwrites.
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), index=True)
    kb_id: Mapped[int] = mapped_column(Integer, index=True)
    version: Mapped[int] = mapped_column(Integer)
    ordinal: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    pages: Mapped[list[int]] = mapped_column(JSON, default=list)
    section_path: Mapped[list[str]] = mapped_column(JSON, default=list)
    element_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Sensitive findings in the extracted text, {kind: count}, whatever the ingest policy did with
    # them: the admin sees which documents hold what even when the stored text is redacted.
    findings: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    redacted: Mapped[bool] = mapped_column(Boolean, default=False)  # `text` had spans replaced at ingest


class Job(Base):
    """One ingestion of one document version. The row, not the broker, is the source of truth."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_state_heartbeat", "state", "heartbeat_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    state: Mapped[JobState] = mapped_column(_enum(JobState), default=JobState.QUEUED)
    stage: Mapped[str] = mapped_column(String(32), default="queued")
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    worker_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class WorkerHeartbeat(Base):
    """Lets `zhiku ingest` tell whether any worker is alive before it waits on one."""

    __tablename__ = "worker_heartbeats"
    worker_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class PolicyStage(str, enum.Enum):
    INGEST = "ingest"  # what is stored: applies to every reader, so it has no role
    ANSWER = "answer"  # what one role is shown, on the question and the streamed answer


class SensitiveTerm(Base):
    """One admin-listed term; (term, category) is unique so re-importing a list updates severities."""

    __tablename__ = "sensitive_terms"
    __table_args__ = (UniqueConstraint("term", "category"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    term: Mapped[str] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16), default="medium")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class SensitivePolicy(Base):
    """kind → action for one stage, scoped to a KB and/or a role (NULL = any). The most specific
    row wins: (kb, role) over (kb, any) over (any, role) over (any, any) over the built-in default.
    One row per scope is kept by app/services/sensitive.py (a UNIQUE constraint would not hold:
    NULLs never collide)."""

    __tablename__ = "sensitive_policies"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stage: Mapped[PolicyStage] = mapped_column(_enum(PolicyStage))
    kb_id: Mapped[int | None] = mapped_column(
        ForeignKey("knowledge_bases.id", ondelete="CASCADE"), nullable=True, index=True)
    role: Mapped[Role | None] = mapped_column(_enum(Role), nullable=True)
    actions: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)  # kind or "TERM:<category>" → action
    default_action: Mapped[str] = mapped_column(String(16), default="allow")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class AuditEvent(Base):
    """Append-only record of who did what: logins, uploads, deletions, questions, redactions, blocks."""

    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    # No foreign keys: the log must outlive the users, KBs and documents it mentions.
    user_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    username: Mapped[str | None] = mapped_column(String(128), nullable=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    kb_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    document_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    detail: Mapped[dict] = mapped_column(JSON, default=dict)


class Feedback(Base):
    """Thumbs up/down on one answer. The question and answer are copied in: the audit log may hold
    only the question's hash, and the admin reading feedback needs the words."""

    __tablename__ = "feedback"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    user_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)  # no FK: outlives users
    username: Mapped[str] = mapped_column(String(128))
    question_event_id: Mapped[int] = mapped_column(Integer, index=True)  # the `ask` audit event answered
    question: Mapped[str] = mapped_column(Text)
    answer: Mapped[str] = mapped_column(Text)
    cited_chunk_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    is_positive: Mapped[bool] = mapped_column(Boolean)
    comment: Mapped[str] = mapped_column(Text, default="")


class LoginFailures(Base):
    """Consecutive failed logins for one key (`user:<name>` or `addr:<client address>`). In SQL, not
    in process memory, so every API process and a restart see the same count."""

    __tablename__ = "login_failures"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    num_failures: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
