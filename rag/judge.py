"""The model's own judgement of whether the sources hold the answer, before it writes one.

The default 1.5B model almost never says "not in the sources" by itself (MODELS.md; 4 of 13
unanswerable questions refused in docs/quality.md), and SQuAD 2.0-style questions about the very
topics in the knowledge base pass any retrieval-score threshold. Asked directly — "does this source
contain the answer? yes or no" — the same model separates them far better: the log-odds of its first
token, yes against no, is a source's score, and the question's is the best over its sources
(`bench/refusal_judge.py` calibrates the threshold; AUC and operating points in docs/quality.md).
Costs about one extra prompt forward pass (one per source, max_tokens=1, the sources' tokens once).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

from rag.llm import ChatClient, LLMProtocolError
from rag.prompt import Source, sources_and_question

JUDGE_SYSTEM_PROMPT = (
    "判断下面的资料是否包含回答问题所需的信息。只回答“是”或“否”。\n"
    "Decide whether the sources below contain the information needed to answer the question. "
    "Reply only Yes or No."
)
YES = frozenset({"是", "yes"})
NO = frozenset({"否", "no"})
TOP_LOGPROBS = 20


def judge_messages(question: str, sources: Sequence[Source], history: Sequence[dict] = ()) -> list[dict]:
    """The judge's prompt: its own rule, the chat so far (a follow-up is judged in its context), then the
    sources and the question as the answer prompt holds them."""
    return [{"role": "system", "content": JUDGE_SYSTEM_PROMPT}, *history,
            {"role": "user", "content": sources_and_question(question, sources)}]


def evidence_score(first_token: Mapping[str, float]) -> float | None:
    """log P(yes) - log P(no) over the first token's listed alternatives ({text: logprob}), each side
    summed over its spellings. A side missing from the list is bounded by the least likely listed
    token, so the score errs toward the middle, never to infinity. None (the judge abstains) when
    neither is listed: a reasoning model (R1) starts with its thoughts, not with yes or no."""
    floor = min(first_token.values(), default=0.0)

    def side(words: frozenset[str]) -> float | None:
        found = [lp for token, lp in first_token.items() if token.strip().lower() in words]
        return _logsumexp(found) if found else None

    yes, no = side(YES), side(NO)
    if yes is None and no is None:
        return None
    return (floor if yes is None else yes) - (floor if no is None else no)


def judge_sources(chat: ChatClient, question: str, sources: Sequence[Source],
                  history: Sequence[dict] = ()) -> list[float | None]:
    """Each source's score, in the sources' order (None: that judgement abstained). Judged one at a
    time: asked about all of them at once the model says yes far more often to unanswerable
    questions (AUC 0.79 against 0.84 one source at a time; at ~4% false refusals 19% against 40% of
    unanswerable questions refused, docs/quality.md). About the same prompt tokens; the requests go
    out together."""
    with ThreadPoolExecutor(max_workers=max(1, len(sources))) as pool:
        return list(pool.map(lambda source: _judge_one(chat, question, source, history), sources))


def best_score(scores: Sequence[float | None]) -> float | None:
    """The question's score: its best source's. None: every judgement abstained."""
    known = [score for score in scores if score is not None]
    return max(known) if known else None


def sources_kept(sources: Sequence[Source], scores: Sequence[float | None], min_score: float,
                 max_below_best: float | None = None) -> list[Source]:
    """The sources the judge did not reject: with five near-miss sources the small model follows a
    wrong one or mixes them and cites them (the oracle gap and citation precision in
    docs/quality.md), so a source judged not to hold the answer is left out of the answer prompt —
    one scoring below `min_score`, or more than `max_below_best` below the best source (the judge
    says yes to most near-misses, but less surely than to the source that holds the answer). An
    abstained judgement keeps its source."""
    best = best_score(scores)
    bar = min_score if best is None or max_below_best is None else max(min_score, best - max_below_best)
    return [source for source, score in zip(sources, scores, strict=True) if score is None or score >= bar]


def _judge_one(chat: ChatClient, question: str, source: Source, history: Sequence[dict]) -> float | None:
    messages = judge_messages(question, [source], history)
    try:
        first_token = chat.first_token_logprobs(messages, top_logprobs=TOP_LOGPROBS)
    except LLMProtocolError as exc:
        raise LLMProtocolError(f"{exc}; the refusal judge needs a model server that returns logprobs "
                               "(or turn it off: ZHIKU_REFUSAL_JUDGE=false)") from exc
    return evidence_score(first_token)


def _logsumexp(values: Sequence[float]) -> float:
    peak = max(values)
    return peak + math.log(sum(math.exp(v - peak) for v in values))
