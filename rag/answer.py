"""Sources + question → a stream of events: the grounded, cited answer as the model writes it.

Order: `sources`, then `reasoning` / `token` deltas, then one `citation` per cited source, then
`done` (or `error` when the model server fails). The answer is the plain refusal sentence, and
`done.refused_by` says why, when no source is close enough to the question (best query–chunk cosine
below `AnswerConfig.min_dense_score`: "threshold", the model is not called at all), when the model
judges that the sources do not hold the answer (rag/judge.py, with `AnswerConfig.min_judge_score`:
"judge"), or when the model itself replies with the refusal ("model"). `done.judge_scores` holds the
judge's score per source; sources it scored below `AnswerConfig.min_source_judge_score`, or more
than `AnswerConfig.source_judge_margin` below the best source, are left out of the answer prompt,
and `done.sources_used` lists the numbers of those the model was given.

With a `Protection`, sensitive content is handled before anything reaches the model or the user:
the question and every source are rewritten by the policy (the model cannot repeat what it never
saw), and reasoning and answer deltas pass a `StreamGuard` that holds back a window so a value split
across deltas is still caught. A BLOCK finding in the question or the output ends the answer with an
`error` event of code `BLOCKED`. `done` lists what was masked, redacted or blocked, for the audit log.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from rag.citations import DEFAULT_MIN_SUPPORT, Citation, attribute_citations, parse_citations
from rag.judge import best_score, judge_sources, sources_kept
from rag.llm import ChatClient, LLMError, LLMUnavailable
from rag.prompt import Source, build_messages, refusal_text
from rag.refusal import TrailingRefusalGuard, is_refusal
from rag.sensitive import ActionTaken, Protection, StreamGuard
from rag.tokenize import has_cjk

SNIPPET_CHARS = 300
BLOCKED_ZH = "该回答涉及受保护的敏感内容，已按安全策略拦截。"
BLOCKED_EN = "This answer was withheld: it involves content that the security policy blocks."
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
    # None: no judge call. Else refuse when the model's yes/no log-odds that the sources hold the
    # answer is below this (rag/judge.py; calibrated per model by bench/refusal_judge.py).
    min_judge_score: float | None = None
    # With the judge: sources scoring below this, or more than source_judge_margin below the best
    # source, are left out of the answer prompt (min_source_judge_score None: every source is kept,
    # whatever the margin; source_judge_margin None: no margin).
    min_source_judge_score: float | None = None
    source_judge_margin: float | None = None


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


def blocked_text(question: str) -> str:
    return BLOCKED_ZH if has_cjk(question) else BLOCKED_EN


def _taken_payload(stage: str, taken: Sequence[ActionTaken]) -> list[dict]:
    return [{"stage": stage, "kind": t.kind, "action": t.action.value, "category": t.category} for t in taken]


def _protect_sources(sources: Sequence[Source], protection: Protection) -> tuple[list[Source], list[dict]]:
    protected, taken = [], []
    for source in sources:
        # The file name and section titles are shown with every source: a listed term in a heading
        # or a name would otherwise leak past the redacted text.
        text, section, document = (protection.apply(field)[1] for field in (source.text, source.section, source.document))
        protected.append(replace(source, text=text.text, section=section.text, document=document.text))
        taken += _taken_payload("source", [*text.actions_taken, *section.actions_taken, *document.actions_taken])
    return protected, taken


def answer_stream(
    question: str,
    sources: Sequence[Source],
    *,
    chat: ChatClient,
    config: AnswerConfig,
    history: Sequence[dict] = (),
    protection: Protection | None = None,
) -> Iterator[Event]:
    taken: list[dict] = []
    if protection is not None:
        _, asked = protection.apply(question)
        taken += _taken_payload("question", asked.actions_taken)
        if asked.blocked:
            yield Event("sources", {"sources": []})
            yield Event("error", {"code": "BLOCKED", "message": blocked_text(question), "redactions": taken})
            return
        question_for_model = asked.text
        sources, from_sources = _protect_sources(sources, protection)
        taken += from_sources
    else:
        question_for_model = question
    yield Event("sources", {"sources": [source_payload(s) for s in sources]})
    if not has_evidence(sources, config.min_dense_score):
        yield from _refusal(question, "threshold", taken)
        return
    judge_scores: list[dict] = []  # {"n", "score"} per judged source; score None: the judgement abstained
    if config.min_judge_score is not None:
        try:
            scores = judge_sources(chat, question_for_model, sources, history)
        except LLMError as exc:
            yield _llm_error(exc)
            return
        judge_scores = [{"n": source.n, "score": score} for source, score in zip(sources, scores)]
        best = best_score(scores)
        if best is not None and best < config.min_judge_score:
            yield from _refusal(question, "judge", taken, judge_scores)
            return
        if config.min_source_judge_score is not None:
            sources = sources_kept(sources, scores, config.min_source_judge_score, config.source_judge_margin)

    answer: list[str] = []
    reasoning: list[str] = []
    guards = {"reasoning": protection.stream_guard(), "token": protection.stream_guard()} if protection else {}

    trailing_refusal = TrailingRefusalGuard()

    def released(kind: str, text: str, *, final: bool = False) -> str:
        guard: StreamGuard | None = guards.get(kind)
        if guard is not None:
            text = guard.flush() if final else guard.feed(text)
        if kind != "token":
            return text
        shown = trailing_refusal.feed(text)
        return shown + trailing_refusal.flush("".join(answer) + shown) if final else shown

    def blocked() -> bool:
        return any(guard.blocked for guard in guards.values())

    try:
        for delta in chat.stream(
            build_messages(question_for_model, sources, history=history),
            max_tokens=config.max_tokens,
            temperature=config.temperature,
        ):
            for kind, text, sink in (("reasoning", delta.reasoning, reasoning), ("token", delta.content, answer)):
                shown = released(kind, text) if text else ""
                if shown:
                    sink.append(shown)
                    yield Event(kind, {"text": shown})
            if blocked():
                break
        for kind, sink in (("reasoning", reasoning), ("token", answer)):
            shown = "" if blocked() else released(kind, "", final=True)
            if shown:
                sink.append(shown)
                yield Event(kind, {"text": shown})
    except LLMError as exc:
        yield _llm_error(exc)
        return
    for stage, guard in guards.items():
        taken += _taken_payload("answer" if stage == "token" else stage, guard.actions_taken)
    if blocked():
        taken.append({"stage": "answer", "kind": None, "action": "block", "category": None})
        yield Event("error", {"code": "BLOCKED", "message": blocked_text(question), "redactions": taken})
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
            "refused_by": "model" if refused else None,
            "citations": [citation_payload(c) for c in citations],
            "redactions": taken,
            "judge_scores": judge_scores,
            "sources_used": [source.n for source in sources],
        },
    )


def _refusal(question: str, refused_by: str, taken: list[dict],
             judge_scores: Sequence[dict] = ()) -> Iterator[Event]:
    text = refusal_text(question)
    yield Event("token", {"text": text})
    yield Event("done", {"answer": text, "reasoning": "", "refused": True, "refused_by": refused_by,
                         "citations": [], "redactions": taken, "judge_scores": list(judge_scores),
                         "sources_used": []})


def _llm_error(exc: LLMError) -> Event:
    code = "LLM_UNAVAILABLE" if isinstance(exc, LLMUnavailable) else "LLM_FAILED"
    return Event("error", {"code": code, "message": str(exc)})
