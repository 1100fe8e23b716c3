"""Question → permitted chunks → grounded, cited answer stream. Shared by the API and the CLI.

Every question of a user ranks only the chunks their ACL and the question's filters admit (computed
in SQL for this question, never cached), and every question is written to the audit log with what
it cited. A follow-up question is searched in its standalone form (rag/rewrite.py); the answer
prompt gets the user's own words and the history."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from app.db import session_scope
from app.models import Chunk, Document, User
from app.schemas import AskFilters
from app.services import acl
from app.services.audit import question_for_log, record
from app.services.sensitive import answer_protection
from app.settings import Settings
from ingest.embed import Embedder, min_relevant_cosine
from ingest.index import KBIndex
from ingest.tasks import configured_embedder, kb_index_dir
from rag.answer import AnswerConfig, Event, answer_stream
from rag.llm import ChatClient
from rag.prompt import Source
from rag.rerank import load_reranker, rerank
from rag.retrieve import Query, RetrieveConfig, ScoredChunk, retrieve
from rag.rewrite import RewriteConfig, rewrite_followup
from rag.sensitive import Protection

if TYPE_CHECKING:
    from sentence_transformers import CrossEncoder

SNIPPET_CHARS = 300


@dataclass
class Answering:
    settings: Settings
    session_factory: sessionmaker[Session]
    _indexes: dict[int, tuple[int, KBIndex]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    reranker: CrossEncoder | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        # Loaded here, when the server starts: a wrong reranker_path must stop it then, not fail the
        # first question (RerankerLoadError says what is wrong with the folder).
        folder = self.settings.reranker_folder
        self.reranker = load_reranker(folder) if folder is not None else None

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

    def find_sources(self, question: str, kb_ids: Sequence[int], *, top_k: int,
                     allowed_chunk_ids: np.ndarray | None = None) -> list[Source]:
        """`allowed_chunk_ids` None: every chunk of the KBs (a local operator); else only those."""
        indexes = [index for kb_id in kb_ids if (index := self.index_for(kb_id)) is not None]
        if not indexes:
            return []
        # The reranker reorders the first rerank_candidates fused hits, so that many are ranked.
        num_ranked = max(top_k, self.settings.rerank_candidates) if self.reranker else top_k
        query = Query(text=question, top_k=num_ranked, allowed_chunk_ids=allowed_chunk_ids)
        scored = retrieve(query, indexes=indexes, embedder=self.embedder, config=RetrieveConfig())
        rows = self._chunk_rows([s.chunk_id for s in scored], kb_ids)
        if self.reranker is not None:
            scored = rerank(question, scored, lambda ids: {i: rows[i][0].text for i in ids if i in rows},
                            self.reranker, self.settings.rerank_candidates)
        return self._sources(scored[:top_k], rows)

    def _chunk_rows(self, chunk_ids: list[int], kb_ids: Sequence[int]) -> dict[int, tuple[Chunk, str]]:
        """{chunk id: (chunk, file name)} of the ids still in the DB."""
        with session_scope(self.session_factory) as session:
            return {
                chunk.id: (chunk, filename)
                for chunk, filename in session.execute(
                    select(Chunk, Document.filename)
                    .join(Document, Document.id == Chunk.document_id)
                    .where(Chunk.id.in_(chunk_ids), Chunk.kb_id.in_(list(kb_ids)))
                )
            }

    @staticmethod
    def _sources(scored: Sequence[ScoredChunk], rows: dict[int, tuple[Chunk, str]]) -> list[Source]:
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
               user: User | None = None, history: Sequence[dict] = (),
               filters: AskFilters | None = None) -> Iterator[Event]:
        """`user` None is a local operator (the CLI): every chunk of the KBs, and the policies for
        no particular role. `history`: earlier {"role", "content"} messages, oldest first.
        `sources` carries `searched_query` (what retrieval ranked for) and `rewritten`; `done` and
        `error` carry `question_id`, the id of the question's audit event (feedback refers to it),
        and `done` the `cited_chunk_ids`."""
        with session_scope(self.session_factory) as session:
            protection = answer_protection(session, kb_ids, user.role if user else None)
            allowed = permitted_chunk_ids(session, user, kb_ids, filters)
        history = protected_history(recent_history(history, max_messages=self.settings.history_max_messages,
                                                   max_chars=self.settings.history_max_chars), protection)
        searched = self._search_query(question, history, protection)
        sources = self.find_sources(searched, kb_ids, top_k=top_k or self.settings.top_k,
                                    allowed_chunk_ids=allowed)
        config = answer_config(self.settings)
        is_audited = False
        try:
            for event in answer_stream(question, sources, chat=self.chat, config=config, history=history,
                                       protection=protection):
                if event.type == "sources":
                    # Shown as the policy shows the question: the user's own words may hold a listed
                    # term that this role must not see echoed back.
                    event = Event("sources", {**event.data, "searched_query": protection.apply(searched)[1].text,
                                              "rewritten": searched != question})
                if event.type in ("done", "error"):
                    if event.data.get("redactions"):
                        self._audit_redactions(event, kb_ids, user)
                    event = self._audit_question(event, question, kb_ids, sources, user)
                    is_audited = True
                yield event
        finally:
            if not is_audited:  # the client went away mid-answer: the question was still asked
                self._audit_question(Event("error", {"code": "ABORTED"}), question, kb_ids, sources, user)

    def _search_query(self, question: str, history: Sequence[dict], protection: Protection) -> str:
        """The follow-up's standalone form when rewriting is on and works, else the question as asked.
        The model sees the question only as the policy lets it (a blocked one is not sent at all)."""
        if not history or not self.settings.rewrite_followups:
            return question
        _, asked = protection.apply(question)
        if asked.blocked:
            return question  # answer_stream refuses it before anything reaches the model
        rewritten = rewrite_followup(asked.text, history, chat=self.chat, config=RewriteConfig())
        return rewritten or question

    def _audit_question(self, event: Event, question: str, kb_ids: Sequence[int], sources: Sequence[Source],
                        user: User | None) -> Event:
        by_n = {source.n: source.chunk_id for source in sources}
        cited = [by_n[c["n"]] for c in event.data.get("citations", []) if c["n"] in by_n]
        if event.type == "error":
            outcome = event.data["code"]
        else:
            outcome = "refused" if event.data["refused"] else "answered"
        # A question the sensitive-content policy acted on is kept only as its hash: the log must
        # not become a copy of what the policy removed.
        is_sensitive = any(r["stage"] == "question" for r in event.data.get("redactions", []))
        kept = question_for_log(question, "sha256" if is_sensitive else self.settings.audit_question)
        with session_scope(self.session_factory) as session:
            audit_event = record(session, "ask", user=user, kb_ids=list(kb_ids), **kept,
                                 retrieved_chunk_ids=[s.chunk_id for s in sources], cited_chunk_ids=cited,
                                 outcome=outcome)
            session.flush()
            extra = {"question_id": audit_event.id}
        if event.type == "done":
            extra["cited_chunk_ids"] = cited
        return Event(event.type, {**event.data, **extra})

    def _audit_redactions(self, event: Event, kb_ids: Sequence[int], user: User | None) -> None:
        redactions = event.data["redactions"]
        blocked = event.type == "error"
        with session_scope(self.session_factory) as session:
            record(session, "sensitive.block" if blocked else "sensitive.redact",
                   user=user,
                   kb_ids=list(kb_ids), redactions=redactions)


def answer_config(settings: Settings) -> AnswerConfig:
    """How answers are made under these settings: the API, `zhiku eval` and the benchmarks share it."""
    return AnswerConfig(
        max_tokens=settings.llm_max_tokens,
        min_dense_score=settings.refusal_min_cosine or min_relevant_cosine(settings.embedder),
        min_judge_score=settings.refusal_judge_min_score if settings.refusal_judge else None,
        min_source_judge_score=(settings.refusal_judge_min_source_score
                                if settings.refusal_judge_drops_sources else None),
        source_judge_margin=(settings.refusal_judge_source_margin
                             if settings.refusal_judge_drops_sources else None),
    )


def permitted_chunk_ids(session: Session, user: User | None, kb_ids: Sequence[int],
                        filters: AskFilters | None) -> np.ndarray | None:
    """The chunk ids retrieval may rank: the ACL's AND the filters'. None: every chunk of the KBs
    (a local operator without filters)."""
    allowed = None if user is None else acl.allowed_chunk_ids(session, user, kb_ids)
    if filters is None or not filters.is_narrowing:
        return allowed
    matching = filtered_chunk_ids(session, kb_ids, filters)
    return matching if allowed is None else np.intersect1d(allowed, matching, assume_unique=True)


def filtered_chunk_ids(session: Session, kb_ids: Sequence[int], filters: AskFilters) -> np.ndarray:
    """Chunk ids of `kb_ids` whose document has one of the file types and was first uploaded in the
    date range. The type is the file name's extension: the only type a document records."""
    conditions = [Document.kb_id.in_(list(kb_ids))]
    if filters.file_types:
        filename = func.lower(Document.filename)
        conditions.append(or_(*(filename.like(f"%.{file_type}") for file_type in filters.file_types)))
    if filters.created_from is not None:
        conditions.append(Document.created_at >= filters.created_from)
    if filters.created_to is not None:
        conditions.append(Document.created_at < filters.created_to)
    query = select(Chunk.id).join(Document, Document.id == Chunk.document_id).where(*conditions)
    return np.fromiter(session.scalars(query), dtype=np.int64)


def recent_history(history: Sequence[dict], *, max_messages: int, max_chars: int) -> list[dict]:
    """The last messages, each clipped: the prompt also holds the sources and must fit the context."""
    kept = list(history)[-max_messages:] if max_messages > 0 else []
    return [{"role": m["role"], "content": m["content"][:max_chars]} for m in kept]


def protected_history(history: Sequence[dict], protection: Protection) -> list[dict]:
    """History as the answer policy lets the model see it: masked or redacted text, and a message the
    policy blocks left out (the user cannot route a blocked question past the policy through it)."""
    kept = []
    for message in history:
        _, redaction = protection.apply(message["content"])
        if not redaction.blocked:
            kept.append({"role": message["role"], "content": redaction.text})
    return kept
