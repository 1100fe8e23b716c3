"""OpenAI-compatible chat over the knowledge bases, under the caller's own Zhiku token.

Any OpenAI client asks Zhiku with base_url = <zhiku>/v1 and api_key = a token from
POST /api/auth/login. Models: "zhiku" asks every knowledge base the caller may read, "zhiku:<kb id>"
one of them; the same ACL filter, sensitive-content policy and audit record as /api/ask apply.
The last user message is the question. The answer arrives as `content` with [n] citations and R1
reasoning as `reasoning_content` (as DeepSeek's own API sends it); Zhiku's sources and checked
citations ride in an extra `zhiku` field of the final chunk (or of the non-streamed response).
A question the sensitive-content policy blocks ends with finish_reason "content_filter".
Sampling fields (temperature, max_tokens...) are accepted and ignored: answers follow the server's
settings, so every client gets the same grounded behaviour.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Iterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from app.deps import CurrentUser, SessionDep
from app.errors import ErrorCode, ZhikuError
from app.models import User
from app.services import documents
from rag.answer import Event

router = APIRouter(prefix="/v1", tags=["OpenAI-compatible"])

ALL_KBS = "zhiku"
KB_PREFIX = "zhiku:"


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: str
    content: str | list[dict] | None = None


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str = ALL_KBS
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False


@router.get("/models")
def list_models(session: SessionDep, user: CurrentUser) -> dict:
    kbs = documents.list_kbs(session, user)
    entries = [(ALL_KBS, "every knowledge base you may read")] + [(f"{KB_PREFIX}{kb.id}", kb.name) for kb in kbs]
    return {"object": "list",
            "data": [{"id": model_id, "object": "model", "created": 0, "owned_by": "zhiku", "name": name}
                     for model_id, name in entries]}


def question_of(messages: Iterable[ChatMessage]) -> str:
    """The text of the last user message (text parts joined when the content is a list of parts)."""
    for message in reversed(list(messages)):
        if message.role != "user":
            continue
        content = message.content
        if isinstance(content, list):
            content = "".join(part.get("text", "") for part in content if part.get("type") == "text")
        if content and content.strip():
            return content
    raise ZhikuError(ErrorCode.BAD_REQUEST, "the messages hold no user message with text")


def kb_ids_of(session: Session, user: User, model: str) -> list[int]:
    if model == ALL_KBS:
        kb_ids = [kb.id for kb in documents.list_kbs(session, user)]
        if not kb_ids:
            raise ZhikuError(ErrorCode.KB_NOT_FOUND, "there is no knowledge base you may read")
        return kb_ids
    if model.startswith(KB_PREFIX) and model[len(KB_PREFIX):].isdigit():
        return [documents.get_kb(session, int(model[len(KB_PREFIX):]), user).id]  # 404 when not readable
    raise ZhikuError(ErrorCode.BAD_REQUEST, f"unknown model {model!r}: use {ALL_KBS!r} or '{KB_PREFIX}<kb id>'")


@router.post("/chat/completions", response_model=None)
def chat_completions(body: ChatRequest, request: Request, session: SessionDep,
                     user: CurrentUser) -> dict | StreamingResponse:
    question, kb_ids = question_of(body.messages), kb_ids_of(session, user, body.model)
    events = request.app.state.answering.stream(question, kb_ids, user=user)
    head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": body.model}
    if body.stream:
        return StreamingResponse(_sse(head, events), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})
    return _completion(head, events)


def _deltas(events: Iterable[Event]) -> Iterator[tuple[dict, str | None, dict | None]]:
    """(delta, finish_reason, zhiku extra) per answer event worth sending."""
    sources: list[dict] = []
    citations: list[dict] = []
    for event in events:
        if event.type == "sources":
            sources = event.data["sources"]
        elif event.type == "citation":
            citations.append(event.data)
        elif event.type in ("reasoning", "token"):
            yield {"reasoning_content" if event.type == "reasoning" else "content": event.data["text"]}, None, None
        elif event.type == "done":
            yield {}, "stop", {"sources": sources, "citations": citations, "refused": event.data["refused"],
                               "question_id": event.data.get("question_id")}
        elif event.type == "error" and event.data.get("code") == "BLOCKED":
            yield {"content": event.data["message"]}, "content_filter", {"sources": [], "citations": [],
                                                                         "refused": True}
        elif event.type == "error":
            raise ZhikuError(ErrorCode.LLM_UNAVAILABLE, event.data.get("message", "the answer failed"))


def _sse(head: dict, events: Iterable[Event]) -> Iterator[str]:
    def chunk(delta: dict, finish: str | None, extra: dict | None) -> str:
        payload = {**head, "object": "chat.completion.chunk",
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        if extra is not None:
            payload["zhiku"] = extra
        return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"

    yield chunk({"role": "assistant", "content": ""}, None, None)
    try:
        for delta, finish, extra in _deltas(events):
            yield chunk(delta, finish, extra)
    except ZhikuError as error:  # headers are gone: report in the stream, as OpenAI's API does
        yield f"data: {json.dumps(error.to_json(), ensure_ascii=False)}\n\n"
    yield "data: [DONE]\n\n"


def _completion(head: dict, events: Iterable[Event]) -> dict:
    content, reasoning, finish, extra = [], [], "stop", {}
    for delta, finish_reason, zhiku in _deltas(events):
        content.append(delta.get("content", ""))
        reasoning.append(delta.get("reasoning_content", ""))
        finish, extra = finish_reason or finish, zhiku or extra
    message = {"role": "assistant", "content": "".join(content)}
    if any(reasoning):
        message["reasoning_content"] = "".join(reasoning)
    return {**head, "object": "chat.completion", "zhiku": extra,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}]}
