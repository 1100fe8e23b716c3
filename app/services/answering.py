"""Question → permitted chunks → grounded, cited answer stream. Shared by the API and the CLI."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.db import session_scope
from app.models import Chunk, Document, User
from app.services.audit import record
from app.services.sensitive import answer_protection
from app.settings import Settings
from ingest.embed import Embedder, min_relevant_cosine
from ingest.index import KBIndex
from ingest.tasks import configured_embedder, kb_index_dir
from rag.answer import AnswerConfig, Event, answer_stream
from rag.llm import ChatClient
from rag.prompt import Source
from rag.retrieve import Query, RetrieveConfig, retrieve

SNIPPET_CHARS = 300


@dataclass
class Answering:
    settings: Settings
    session_factory: sessionmaker[Session]
    _indexes: dict[int, tuple[int, KBIndex]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @cached_property
    def embedder(self) -> Embedder:
        return configured_embedder(self.settings)

    @cached_property
    def chat(self) -> ChatClient:
        return ChatClient(base_url=self.settings.llm_url, model=self.settings.llm_model, timeout_s=600.0)

    def index_for(self, kb_id: int) -> KBIndex | None:
        """The KB's index, reopened when a worker has saved a newer one."""
        folder = kb_index_dir(self.settings, kb_id)
        manifest = folder / "manifest.json"  # replaced atomically by every save
        if not manifest.exists():
            return None
        stamp = manifest.stat().st_mtime_ns
        with self._lock:
            cached = self._indexes.get(kb_id)
            if cached is None or cached[0] != stamp:
                cached = (stamp, KBIndex.open(folder, self.embedder.dim))
                self._indexes[kb_id] = cached
            return cached[1]

    def find_sources(self, question: str, kb_ids: Sequence[int], *, top_k: int) -> list[Source]:
        indexes = [index for kb_id in kb_ids if (index := self.index_for(kb_id)) is not None]
        if not indexes:
            return []
        scored = retrieve(
            Query(text=question, top_k=top_k), indexes=indexes, embedder=self.embedder, config=RetrieveConfig()
        )
        with session_scope(self.session_factory) as session:
            rows = {
                chunk.id: (chunk, filename)
                for chunk, filename in session.execute(
                    select(Chunk, Document.filename)
                    .join(Document, Document.id == Chunk.document_id)
                    .where(Chunk.id.in_([s.chunk_id for s in scored]), Chunk.kb_id.in_(list(kb_ids)))
                )
            }
        sources: list[Source] = []
        for hit in scored:
            if hit.chunk_id not in rows:
                continue  # removed from the DB after the index snapshot we searched
            chunk, filename = rows[hit.chunk_id]
            sources.append(
                Source(
                    n=len(sources) + 1,
                    chunk_id=chunk.id,
                    text=chunk.text,
                    document=filename,
                    page=chunk.pages[0] if chunk.pages else None,
                    pages=tuple(chunk.pages),
                    section=" > ".join(chunk.section_path),
                    score=hit.score,
                    dense_score=hit.dense_score,
                    document_id=chunk.document_id,
                )
            )
        return sources

    def stream(self, question: str, kb_ids: Sequence[int], *, top_k: int | None = None,
               user: User | None = None) -> Iterator[Event]:
        """`user` None is a local operator (the CLI): the policies for no particular role apply."""
        with session_scope(self.session_factory) as session:
            protection = answer_protection(session, kb_ids, user.role if user else None)
        sources = self.find_sources(question, kb_ids, top_k=top_k or self.settings.top_k)
        config = AnswerConfig(
            max_tokens=self.settings.llm_max_tokens,
            min_dense_score=self.settings.refusal_min_cosine or min_relevant_cosine(self.settings.embedder),
        )
        for event in answer_stream(question, sources, chat=self.chat, config=config, protection=protection):
            if event.type in ("done", "error") and event.data.get("redactions"):
                self._audit_redactions(event, kb_ids, user)
            yield event

    def _audit_redactions(self, event: Event, kb_ids: Sequence[int], user: User | None) -> None:
        redactions = event.data["redactions"]
        blocked = event.type == "error"
        with session_scope(self.session_factory) as session:
            record(session, "sensitive.block" if blocked else "sensitive.redact",
                   user=user,
                   kb_ids=list(kb_ids), redactions=redactions)
