"""QA sets → a knowledge base built by the product's own code → retrieval and answer quality.

A QA set is a folder with `questions.jsonl` and `corpus.jsonl` (the format of ../shared/evaldata/qa,
described in its README). Every passage goes through the product's chunker, embedder and KBIndex;
questions go through `retrieve()` and, when generating, `answer_stream()` against the real model
server, so the numbers are what a user gets. Several sets evaluated together share one pooled
knowledge base (every passage of every set), which is harder than each set alone.

Relevance: a retrieved chunk is relevant when it was cut from a gold passage (`context_ids`). Ranks
are chunk ranks; nDCG counts each gold passage once (its best-ranked chunk), so a passage split into
three chunks is not rewarded three times. Unanswerable questions (no gold passage) count only for
refusal. Answer EM/F1: SQuAD normalisation (lowercase, no punctuation, no English articles), then
tokens = CJK characters one by one plus whitespace-separated words (CMRC's mixed segmentation), the
best over the gold answers; a refused answerable question scores 0. Metric definitions in
docs/quality.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ingest.chunk import ChunkConfig
from ingest.embed import Embedder
from rag.answer import AnswerConfig, answer_stream
from rag.eval_data import QASet, load_qa_set, qa_set_dirs, question_text
from rag.eval_kb import EvalKB, Progress, VectorCache, build_kb, no_progress
from rag.eval_metrics import RANK_DEPTH, QuestionResult
from rag.eval_report import HYBRID, summary_rows
from rag.llm import ChatClient
from rag.prompt import Source
from rag.rerank import rerank
from rag.retrieve import RRF, Query, RetrieveConfig, ScoredChunk, retrieve_by_vector

if TYPE_CHECKING:
    from sentence_transformers import CrossEncoder

NO_RERANK = "hybrid, no rerank"
# The rankers of retrieve(), alone and fused: each fusion stage shows its gain in the table.
ABLATIONS = {
    HYBRID: RetrieveConfig(),
    "hybrid, RRF 1:1": RetrieveConfig(fusion=RRF, dense_weight=1.0, bm25_weight=1.0),
    "dense only": RetrieveConfig(bm25_weight=0.0),
    "bm25 only": RetrieveConfig(dense_weight=0.0),
}


def tagged_questions(sets: Sequence[QASet]) -> list[tuple[str, dict]]:
    return [(qa.name, q) for qa in sets for q in qa.questions]


def _result(
    set_name: str, system: str, question: dict, ranked: list[str] | None, latency_s: float
) -> QuestionResult:
    return QuestionResult(
        set_name=set_name,
        system=system,
        answerable=not question["is_impossible"],
        gold=frozenset(question["context_ids"]),
        answers=tuple(question["answers"]),
        ranked=ranked,
        latency_s=latency_s,
        question_id=question["id"],
    )


def run_retrieval(
    questions: Sequence[tuple[str, dict]],
    kb: EvalKB,
    embedder: Embedder,
    configs: dict[str, RetrieveConfig],
    *,
    depth: int = RANK_DEPTH,
    progress: Progress = no_progress,
) -> tuple[dict[str, list[QuestionResult]], list[list[ScoredChunk]]]:
    """Every question ranked by every config (one query embedding each, `depth` results); also the
    hybrid hits.

    Latency of a config = the query embedding + that config's search.
    """
    results: dict[str, list[QuestionResult]] = {name: [] for name in configs}
    hybrid_hits: list[list[ScoredChunk]] = []
    for done, (set_name, q) in enumerate(questions, start=1):
        started = time.perf_counter()
        text = question_text(q)
        qvec = embedder.embed_query(text)
        embed_s = time.perf_counter() - started
        for name, config in configs.items():
            started = time.perf_counter()
            query = Query(text, top_k=depth)
            hits = retrieve_by_vector(query, qvec, indexes=[kb.index], config=config)
            search_s = time.perf_counter() - started
            ranked = [kb.passage_of[h.chunk_id] for h in hits]
            results[name].append(_result(set_name, name, q, ranked, embed_s + search_s))
            if name == HYBRID:
                hybrid_hits.append(hits)
        progress("retrieve", done, len(questions))
    return results, hybrid_hits


def rerank_hybrid(
    results: dict[str, list[QuestionResult]],
    hits: list[list[ScoredChunk]],
    questions: Sequence[tuple[str, dict]],
    kb: EvalKB,
    reranker: CrossEncoder,
    top_n: int,
) -> tuple[dict[str, list[QuestionResult]], list[list[ScoredChunk]]]:
    """With a reranker configured the product's ranking is the reranked one: it becomes HYBRID (the
    row the JSON reports, the sources generation gets) and the fused order stays as NO_RERANK, so the
    table shows the rerank stage's gain. Latency adds the reranking."""
    reranked_results, reranked_hits = [], []
    for (set_name, q), fused_result, fused in zip(questions, results[HYBRID], hits):
        started = time.perf_counter()
        reordered = rerank(question_text(q), fused, lambda ids: {i: kb.text_of[i] for i in ids}, reranker, top_n)
        latency_s = fused_result.latency_s + time.perf_counter() - started
        reranked_results.append(_result(set_name, HYBRID, q, [kb.passage_of[h.chunk_id] for h in reordered],
                                        latency_s))
        reranked_hits.append(reordered)
    fused_results = [replace(r, system=NO_RERANK) for r in results[HYBRID]]
    others = {name: rows for name, rows in results.items() if name != HYBRID}
    return {HYBRID: reranked_results, NO_RERANK: fused_results, **others}, reranked_hits


def sources_of(hits: Sequence[ScoredChunk], kb: EvalKB, top_k: int) -> list[Source]:
    """The first top_k hits as the numbered sources the answer path gets (as app/services/answering.py).
    `document` is the passage id, so a citation leads back to its passage."""
    return [
        Source(n=n, chunk_id=h.chunk_id, text=kb.text_of[h.chunk_id], document=kb.passage_of[h.chunk_id],
               page=None, section=kb.section_of[h.chunk_id], score=h.score, dense_score=h.dense_score)
        for n, h in enumerate(hits[:top_k], start=1)
    ]


def oracle_sources(question: dict, passages: dict[str, dict]) -> list[Source]:
    """The gold passages themselves, whole: what the model answers with perfect retrieval."""
    return [
        Source(n=n, chunk_id=n, text=passages[pid]["text"], document=pid, page=None,
               section=passages[pid]["title"], score=1.0)
        for n, pid in enumerate(question["context_ids"], start=1)
    ]


def _final(events: Iterable) -> dict:
    for event in events:
        if event.type == "error":
            raise RuntimeError(f"answer failed: {event.data.get('code')}: {event.data.get('message')}")
        if event.type == "done":
            return event.data
    raise RuntimeError("the answer stream ended without `done`")


def generate(
    results: list[QuestionResult],
    questions: Sequence[tuple[str, dict]],
    sources_for: Callable[[int], list[Source]],
    *,
    chat: ChatClient,
    config: AnswerConfig,
    parallel: int = 1,
    progress: Progress = no_progress,
    stage: str = "answer",
) -> None:
    """Answer every question through answer_stream (results filled in place); latency adds the
    answer's wall time. `parallel` answers share the model server's decode batch, and their latency
    includes that sharing."""

    def answer_one(i: int) -> None:
        sources = sources_for(i)
        started = time.perf_counter()
        done = _final(answer_stream(question_text(questions[i][1]), sources, chat=chat, config=config))
        by_n = {s.n: s for s in sources}
        result = results[i]
        result.latency_s += time.perf_counter() - started
        result.answer = done["answer"]
        result.refused = bool(done["refused"])
        result.refused_by = done["refused_by"]
        result.cited = [by_n[c["n"]].document for c in done["citations"]]
        result.judged = [(by_n[j["n"]].document, j["score"]) for j in done["judge_scores"]]
        result.used = [by_n[n].document for n in done["sources_used"]]

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        for done_count, _ in enumerate(pool.map(answer_one, range(len(results))), start=1):
            progress(stage, done_count, len(results))


@dataclass(frozen=True)
class EvalOptions:
    limit: int | None = None  # first N questions of each set
    seed: int | None = None  # with limit: a random sample of N instead of the first N
    generate: bool = True
    ablation: bool = False  # also rank with each ranker alone
    oracle: bool = False  # also answer from the gold passages (answerable questions only)
    top_k: int = 5  # sources given to the model
    parallel: int = 1
    rerank_candidates: int = 20  # with a reranker: the first N fused results it reorders


@dataclass
class Evaluation:
    sets: list[QASet]
    questions: list[tuple[str, dict]]
    kb: EvalKB
    results: dict[str, list[QuestionResult]]  # system → one result per question
    seconds: dict[str, float]  # wall time of each stage

    @property
    def set_names(self) -> list[str]:
        return [qa.name for qa in self.sets]

    def rows(self) -> list[dict]:
        return summary_rows(self.results, self.set_names)


def evaluate(
    dirs: Sequence[Path],
    *,
    embedder: Embedder,
    work_dir: Path,
    chunk_config: ChunkConfig,
    cache: VectorCache,
    options: EvalOptions,
    chat: ChatClient | None = None,
    answer_config: AnswerConfig | None = None,
    reranker: CrossEncoder | None = None,
    progress: Progress = no_progress,
) -> Evaluation:
    """One KB from every passage of every set; every question retrieved (and answered when generating)."""
    sets = [load_qa_set(folder, options.limit, options.seed) for folder in qa_set_dirs(dirs)]
    questions = tagged_questions(sets)
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    kb = build_kb([p for qa in sets for p in qa.passages], embedder=embedder, folder=work_dir / "index",
                  chunk_config=chunk_config, cache=cache, progress=progress)
    seconds["build_kb"] = time.perf_counter() - started
    configs = ABLATIONS if options.ablation else {HYBRID: ABLATIONS[HYBRID]}
    started = time.perf_counter()
    depth = max(RANK_DEPTH, options.rerank_candidates) if reranker is not None else RANK_DEPTH
    results, hits = run_retrieval(questions, kb, embedder, configs, depth=depth, progress=progress)
    if reranker is not None:
        results, hits = rerank_hybrid(results, hits, questions, kb, reranker, options.rerank_candidates)
    seconds["retrieve"] = time.perf_counter() - started
    if options.generate:
        if chat is None or answer_config is None:
            raise ValueError("generating needs a chat client and an answer config")
        started = time.perf_counter()
        generate(results[HYBRID], questions, lambda i: sources_of(hits[i], kb, options.top_k), chat=chat,
                 config=answer_config, parallel=options.parallel, progress=progress)
        seconds["generate"] = time.perf_counter() - started
        if options.oracle:
            passages = {p["id"]: p for qa in sets for p in qa.passages}
            answerable = [(name, q) for name, q in questions if q["context_ids"]]
            oracle = [_result(name, "oracle (gold passage)", q, None, 0.0) for name, q in answerable]
            started = time.perf_counter()
            generate(oracle, answerable, lambda i: oracle_sources(answerable[i][1], passages), chat=chat,
                     config=answer_config, parallel=options.parallel, progress=progress, stage="oracle")
            seconds["oracle"] = time.perf_counter() - started
            results["oracle (gold passage)"] = oracle
    return Evaluation(sets, questions, kb, results, seconds)
