"""Pydantic request/response shapes, named by role."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator


class LoginRequest(BaseModel):
    username: str
    password: str


class UserPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    username: str
    role: str


class LoginResponse(BaseModel):
    token: str
    user: UserPublic


class KnowledgeBaseCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    readers: list[str] = Field(default_factory=lambda: ["public"])  # the KB's ACL


class AclUpdate(BaseModel):
    # Principals: "public", "user:<name>", "group:<name>". For a document, [] means: inherit the KB's.
    readers: list[str] = Field(max_length=1000)


class AclPublic(BaseModel):
    readers: list[str]
    inherited: bool = False  # a document without its own ACL: `readers` are its knowledge base's


class UserCreate(BaseModel):
    username: str = Field(min_length=1, max_length=128, pattern=r"^[^:\s]+$")
    password: str = Field(min_length=8, max_length=1024)
    role: str = Field(default="employee", pattern="^(admin|editor|employee)$")


class UserAdminPublic(BaseModel):
    id: int
    username: str
    role: str
    groups: list[str]


class GroupCreate(BaseModel):
    name: str = Field(min_length=1, max_length=128)


class GroupPublic(BaseModel):
    id: int
    name: str
    members: list[str]


class FeedbackCreate(BaseModel):
    question_id: int  # from the `done` event of /api/ask
    is_positive: bool
    question: str = Field(max_length=4000)
    answer: str = Field(max_length=100_000)
    comment: str = Field(default="", max_length=4000)


class FeedbackPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    at: datetime
    username: str
    question_event_id: int
    question: str
    answer: str
    cited_chunk_ids: list[int]
    is_positive: bool
    comment: str


class AuditEventPublic(BaseModel):
    id: int
    at: datetime
    user_id: int | None
    username: str | None
    action: str
    kb_id: int | None
    document_id: int | None
    detail: dict


class KnowledgeBasePublic(BaseModel):
    id: int
    name: str
    description: str
    num_documents: int


class DocumentPublic(BaseModel):
    id: int
    kb_id: int
    filename: str
    size_bytes: int
    sha256: str
    version: int
    state: str
    error: str | None
    num_chunks: int
    progress: float
    job_id: int | None
    created_at: datetime
    updated_at: datetime


class ChunkPreview(BaseModel):
    ordinal: int
    text: str
    pages: list[int]
    section: str


class DocumentPreview(BaseModel):
    document: DocumentPublic
    chunks: list[ChunkPreview]


class JobPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    document_id: int
    version: int
    state: str
    stage: str
    progress: float
    error: str | None
    attempts: int


def _as_utc(value: datetime) -> datetime:
    """A date or time without a zone is UTC (what the server stores), not the server's local time."""
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


UTCDatetime = Annotated[datetime, AfterValidator(_as_utc)]
# An extension as in the file name ("pdf", ".PDF"), stored lowercased without the dot.
FileType = Annotated[str, Field(pattern=r"^\.?[A-Za-z0-9]{1,16}$"),
                     AfterValidator(lambda file_type: file_type.lstrip(".").lower())]


class AskFilters(BaseModel):
    """Which documents a question may draw on, besides the ACL. An absent field does not narrow;
    semantics in docs/retrieval.md ("Filter semantics")."""

    file_types: list[FileType] = Field(default_factory=list, max_length=50)  # any of these extensions
    created_from: UTCDatetime | None = None  # first uploaded at or after
    created_to: UTCDatetime | None = None  # first uploaded before (exclusive)

    @model_validator(mode="after")
    def _check_range(self) -> "AskFilters":
        if self.created_from and self.created_to and self.created_from >= self.created_to:
            raise ValueError("created_from must be before created_to")
        return self

    @property
    def is_narrowing(self) -> bool:
        return bool(self.file_types or self.created_from or self.created_to)


class ChatTurn(BaseModel):
    # No "system": a client must not replace the answer rules.
    role: Literal["user", "assistant"]
    content: str = Field(max_length=8000)


class AskRequest(BaseModel):
    question: str = Field(min_length=1, max_length=4000)
    kb_ids: list[int] = Field(min_length=1)
    top_k: int | None = Field(default=None, ge=1, le=50)
    # The conversation so far, oldest first; the server keeps the last `history_max_messages`.
    history: list[ChatTurn] = Field(default_factory=list, max_length=100)
    filters: AskFilters | None = None
