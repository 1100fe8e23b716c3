"""Sources + question → a stream of events: the grounded, cited answer as the model writes it.

Order: `sources`, then `reasoning` / `token` deltas, then one `citation` per cited source, then
`done` (or `error` when the model server fails). When no source is close enough to the question
(best query–chunk cosine below `AnswerConfig.min_dense_score`), the model is not called at all and
the answer is the plain refusal sentence.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from rag.citations import DEFAULT_MIN_SUPPORT, Citation, attribute_citations, parse_citations
from rag.llm import ChatClient, LLMError, LLMUnavailable
from rag.prompt import REFUSAL_EN, REFUSAL_ZH, Source, build_messages, refusal_text

SNIPPET_CHARS = 300
EventType = Literal["sources", "reasoning", "token", "citation", "done", "error"]


@dataclass(frozen=True)
class AnswerConfig:
    max_tokens: int = 512
    # Greedy: grounded answers should be reproducible, and copying facts needs no creativity.
    temperature: float = 0.0
    # PROVISIONAL: bench/refusal_threshold.py (EmbeddingGemma-300M, DEV sets, ≤ 2% false refusals)
    # sets this value; its first run did not finish on the shared machine (docs/retrieval.md).
    min_dense_score: float = 0.30
    min_support: float = DEFAULT_MIN_SUPPORT
    # Stricter than min_support: an inferred citation has no marker from the model to back it.
    attribution_min_support: float = 0.5


@dataclass(frozen=True)
class Event:
    type: EventType
    data: dict


def source_payload(source: Source) -> dict:
    return {
        "n": source.n,
        "chunk_id": source.chunk_id,
        "document": source.document,
        "document_id": source.document_id,
        "page": source.page,
        "pages": list(source.pages),
        "section": source.section,
        "snippet": source.text[:SNIPPET_CHARS],
        "score": source.score,
    }


def citation_payload(citation: Citation) -> dict:
    source = citation.source
    return {
        "n": citation.n,
        "document": source.document,
        "page": source.page,
        "pages": list(source.pages),
        "section": source.section,
        "snippet": source.text[:SNIPPET_CHARS],
        "score": source.score,
        "support": citation.support,
        "supported": citation.is_supported,
        "inferred": citation.is_inferred,
    }


def has_evidence(sources: Sequence[Source], min_dense_score: float) -> bool:
    """A source without a cosine (unknown) counts as evidence: we refuse only on a measured miss."""
    return any(s.dense_score is None or s.dense_score >= min_dense_score for s in sources)


def is_refusal(answer: str) -> bool:
    return REFUSAL_ZH.rstrip("。") in answer or REFUSAL_EN.rstrip(".").lower() in answer.lower()


def answer_stream(
    question: str,
    sources: Sequence[Source],
    *,
    chat: ChatClient,
    config: AnswerConfig,
    history: Sequence[dict] = (),
) -> Iterator[Event]:
    yield Event("sources", {"sources": [source_payload(s) for s in sources]})
    if not has_evidence(sources, config.min_dense_score):
        text = refusal_text(question)
        yield Event("token", {"text": text})
        yield Event("done", {"answer": text, "reasoning": "", "refused": True, "citations": []})
        return

    answer: list[str] = []
    reasoning: list[str] = []
    try:
        for delta in chat.stream(
            build_messages(question, sources, history=history),
            max_tokens=config.max_tokens,
            temperature=config.temperature,
        ):
            if delta.reasoning:
                reasoning.append(delta.reasoning)
                yield Event("reasoning", {"text": delta.reasoning})
            if delta.content:
                answer.append(delta.content)
                yield Event("token", {"text": delta.content})
    except LLMError as exc:
        code = "LLM_UNAVAILABLE" if isinstance(exc, LLMUnavailable) else "LLM_FAILED"
        yield Event("error", {"code": code, "message": str(exc)})
        return

    text = "".join(answer).strip()
    refused = is_refusal(text)
    citations = [] if refused else parse_citations(text, sources, min_support=config.min_support)
    if not refused and not citations:
        citations = attribute_citations(text, sources, min_support=config.attribution_min_support)
    for citation in citations:
        yield Event("citation", citation_payload(citation))
    yield Event(
        "done",
        {
            "answer": text,
            "reasoning": "".join(reasoning).strip(),
            "refused": refused,
            "citations": [citation_payload(c) for c in citations],
        },
    )
