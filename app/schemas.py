"""Pydantic request/response shapes, named by role."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


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


class AskRequest(BaseModel):
    question: str = Field(min_length=1, max_length=4000)
    kb_ids: list[int] = Field(min_length=1)
    top_k: int | None = Field(default=None, ge=1, le=50)
