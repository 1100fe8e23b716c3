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

import hashlib
import json
import math
import random
import re
import string
import time
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ingest.chunk import ChunkConfig, chunk, chunk_text_for_embedding
from ingest.elements import Element
from ingest.embed import Embedder
from ingest.ids import chunk_id
from ingest.index import KBIndex
from rag.answer import AnswerConfig, answer_stream
from rag.citations import CITATION_MARKER
from rag.llm import ChatClient
from rag.prompt import Source
from rag.retrieve import Query, RetrieveConfig, ScoredChunk, retrieve_by_vector

RANK_DEPTH = 10  # recall@10, MRR@10 and nDCG@10 need ten results
EMBED_BATCH = 32
SAVE_EVERY_BATCHES = 8
HYBRID = "hybrid"
# The rankers of retrieve(), alone and fused: each fusion stage shows its gain in the table.
ABLATIONS = {
    HYBRID: RetrieveConfig(),
    "dense only": RetrieveConfig(bm25_weight=0.0),
    "bm25 only": RetrieveConfig(dense_weight=0.0),
}
ALL = "all"

Progress = Callable[[str, int, int], None]


def _no_progress(_stage: str, _done: int, _total: int) -> None:
    pass


# ---------------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class QASet:
    name: str
    questions: list[dict]
    passages: list[dict]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def is_qa_set(folder: Path) -> bool:
    return (folder / "questions.jsonl").is_file() and (folder / "corpus.jsonl").is_file()


def qa_set_dirs(paths: Iterable[Path]) -> list[Path]:
    """Each path is a QA set, or a folder of QA sets (every subfolder that is one, sorted)."""
    found: list[Path] = []
    for path in map(Path, paths):
        if is_qa_set(path):
            found.append(path)
            continue
        inside = sorted(p for p in path.iterdir() if p.is_dir() and is_qa_set(p)) if path.is_dir() else []
        if not inside:
            raise FileNotFoundError(f"{path} holds no questions.jsonl + corpus.jsonl, nor folders that do")
        found += inside
    return found


def load_qa_set(folder: Path, limit: int | None = None, seed: int | None = None) -> QASet:
    """`limit` questions: the first ones, or with a `seed` a random sample of them (in file order). The
    files group questions by article and put unanswerable ones unevenly, so a sample is more typical."""
    questions = read_jsonl(folder / "questions.jsonl")
    if limit and seed is not None and limit < len(questions):
        keep = set(random.Random(seed).sample(range(len(questions)), limit))
        questions = [q for i, q in enumerate(questions) if i in keep]
    return QASet(folder.name, questions[:limit] if limit else questions, read_jsonl(folder / "corpus.jsonl"))


def passage_text(row: dict) -> str:
    """A passage as one text: its title line, then its text (what a plain pipeline would index)."""
    return f"{row['title']}\n{row['text']}".strip()


# ------------------------------------------------------------------------------------------- metrics


def first_relevant_rank(ranked: Sequence[str], gold: set[str], k: int) -> int | None:
    """1-based rank of the first result among the first k that is a gold passage."""
    return next((rank for rank, pid in enumerate(ranked[:k], start=1) if pid in gold), None)


def recall_at(ranked: Sequence[str], gold: set[str], k: int) -> float:
    return float(first_relevant_rank(ranked, gold, k) is not None)


def reciprocal_rank(ranked: Sequence[str], gold: set[str], k: int = RANK_DEPTH) -> float:
    rank = first_relevant_rank(ranked, gold, k)
    return 1.0 / rank if rank else 0.0


def ndcg_at(ranked: Sequence[str], gold: set[str], k: int = RANK_DEPTH) -> float:
    """Binary gains; a gold passage counts once, at its best-ranked chunk."""
    if not gold:
        return 0.0
    seen: set[str] = set()
    dcg = 0.0
    for rank, pid in enumerate(ranked[:k], start=1):
        if pid in gold and pid not in seen:
            seen.add(pid)
            dcg += 1.0 / math.log2(rank + 1)
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(k, len(gold)) + 1))
    return dcg / ideal


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_CJK_CHAR = re.compile(r"([\u3400-\u9fff\uf900-\ufaff])")
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation, with Unicode punctuation (，。「」…) removed too and [n] markers dropped."""
    text = CITATION_MARKER.sub(" ", text).lower()
    text = "".join(
        " " if ch in _PUNCTUATION or unicodedata.category(ch).startswith("P") else ch for ch in text
    )
    return " ".join(_ARTICLES.sub(" ", text).split())


def answer_tokens(text: str) -> list[str]:
    """CJK characters one by one, other words whole: character-level for Chinese, words for English."""
    return _CJK_CHAR.sub(r" \1 ", normalize_answer(text)).split()


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    predicted = answer_tokens(prediction)
    return float(any(predicted == answer_tokens(gold) for gold in golds))


def f1_score(prediction: str, golds: Sequence[str]) -> float:
    predicted = answer_tokens(prediction)
    best = 0.0
    for gold in golds:
        expected = answer_tokens(gold)
        common = sum(min(predicted.count(t), expected.count(t)) for t in set(predicted) & set(expected))
        if common:
            precision, recall = common / len(predicted), common / len(expected)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if len(values) else None


# --------------------------------------------------------------------------------------- the KB


@dataclass
class EvalKB:
    index: KBIndex
    passage_of: dict[int, str] = field(default_factory=dict)  # chunk id → passage id
    text_of: dict[int, str] = field(default_factory=dict)  # chunk id → chunk text (what the model reads)
    section_of: dict[int, str] = field(default_factory=dict)
    document_of: dict[int, str] = field(default_factory=dict)


class VectorCache:
    """Document vectors by (embedder, text) in one .npy + one JSON key list: re-running an evaluation
    (another set, the pooled KB, a generation run) does not re-embed the same chunks. No pickle."""

    def __init__(self, folder: Path | None, embedder_name: str) -> None:
        self._vectors: dict[str, np.ndarray] = {}
        self._paths = None
        if folder is None:
            return
        folder.mkdir(parents=True, exist_ok=True)
        self._paths = (folder / f"{embedder_name}.keys.json", folder / f"{embedder_name}.npy")
        keys_path, vectors_path = self._paths
        if keys_path.exists() and vectors_path.exists():
            keys = json.loads(keys_path.read_text(encoding="utf-8"))
            vectors = np.load(vectors_path, allow_pickle=False)
            if len(keys) == len(vectors):
                self._vectors = dict(zip(keys, vectors))

    def _save(self) -> None:
        if self._paths is None:
            return
        keys_path, vectors_path = self._paths
        keys = list(self._vectors)
        # Vectors first: keys that name more vectors than stored are rejected on load (length check).
        np.save(vectors_path, np.stack([self._vectors[k] for k in keys]), allow_pickle=False)
        keys_path.write_text(json.dumps(keys), encoding="utf-8")

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def embed(self, embedder: Embedder, texts: Sequence[str], progress: Progress, stage: str) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if self.key(t) not in self._vectors))
        for start in range(0, len(missing), EMBED_BATCH):
            batch = missing[start : start + EMBED_BATCH]
            for text, vector in zip(batch, embedder.embed_documents(batch)):
                self._vectors[self.key(text)] = vector
            progress(stage, start + len(batch), len(missing))
            # Saved as it goes: embedding a pooled corpus takes tens of minutes on a busy CPU.
            if (start // EMBED_BATCH) % SAVE_EVERY_BATCHES == SAVE_EVERY_BATCHES - 1:
                self._save()
        if missing:
            self._save()
        if not texts:
            return np.zeros((0, embedder.dim), dtype=np.float32)
        return np.stack([self._vectors[self.key(t)] for t in texts]).astype(np.float32)


def passage_elements(row: dict) -> list[Element]:
    """A passage as the extractor would give it: its title (when it has one) heads its text."""
    title = [Element(row["title"], "Title", title_depth=0)] if row["title"].strip() else []
    return [*title, Element(row["text"], "NarrativeText")]


def build_kb(
    passages: Sequence[dict],
    *,
    embedder: Embedder,
    folder: Path,
    chunk_config: ChunkConfig,
    cache: VectorCache,
    progress: Progress = _no_progress,
) -> EvalKB:
    """Chunk, embed and index passages exactly as ingestion does (one passage = one document)."""
    kb = EvalKB(KBIndex.open(folder, embedder.dim))
    ids: list[int] = []
    texts: list[str] = []
    for document_number, row in enumerate(passages, start=1):
        for draft in chunk(passage_elements(row), config=chunk_config, count_tokens=embedder.count_tokens):
            cid = chunk_id(document_number, 1, draft.ordinal)
            ids.append(cid)
            texts.append(chunk_text_for_embedding(draft))
            kb.passage_of[cid] = row["id"]
            kb.text_of[cid] = draft.text
            kb.section_of[cid] = " > ".join(draft.section_path)
            kb.document_of[cid] = row["id"]
        progress("chunk", document_number, len(passages))
    vectors = cache.embed(embedder, texts, progress, "embed")
    kb.index.upsert(np.array(ids, dtype=np.int64), vectors, texts)
    return kb


# ------------------------------------------------------------------------------------ running


@dataclass
class QuestionResult:
    set_name: str
    system: str
    answerable: bool
    gold: frozenset[str]
    answers: tuple[str, ...]
    ranked: list[str] | None  # passage id of each ranked chunk, best first; None: not retrieved (oracle)
    latency_s: float
    answer: str | None = None  # None: not generated
    refused: bool | None = None
    cited: list[str] | None = None  # passage id of each cited chunk


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
    )


def run_retrieval(
    questions: Sequence[tuple[str, dict]],
    kb: EvalKB,
    embedder: Embedder,
    configs: dict[str, RetrieveConfig],
    *,
    progress: Progress = _no_progress,
) -> tuple[dict[str, list[QuestionResult]], list[list[ScoredChunk]]]:
    """Every question ranked by every config (one query embedding each); also the hybrid hits.

    Latency of a config = the query embedding + that config's search.
    """
    results: dict[str, list[QuestionResult]] = {name: [] for name in configs}
    hybrid_hits: list[list[ScoredChunk]] = []
    for done, (set_name, q) in enumerate(questions, start=1):
        started = time.perf_counter()
        qvec = embedder.embed_query(q["question"])
        embed_s = time.perf_counter() - started
        for name, config in configs.items():
            started = time.perf_counter()
            query = Query(q["question"], top_k=RANK_DEPTH)
            hits = retrieve_by_vector(query, qvec, indexes=[kb.index], config=config)
            search_s = time.perf_counter() - started
            ranked = [kb.passage_of[h.chunk_id] for h in hits]
            results[name].append(_result(set_name, name, q, ranked, embed_s + search_s))
            if name == HYBRID:
                hybrid_hits.append(hits)
        progress("retrieve", done, len(questions))
    return results, hybrid_hits


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
    progress: Progress = _no_progress,
    stage: str = "answer",
) -> None:
    """Answer every question through answer_stream (results filled in place); latency adds the
    answer's wall time. `parallel` answers share the model server's decode batch, and their latency
    includes that sharing."""

    def answer_one(i: int) -> None:
        sources = sources_for(i)
        started = time.perf_counter()
        done = _final(answer_stream(questions[i][1]["question"], sources, chat=chat, config=config))
        by_n = {s.n: s for s in sources}
        result = results[i]
        result.latency_s += time.perf_counter() - started
        result.answer = done["answer"]
        result.refused = bool(done["refused"])
        result.cited = [by_n[c["n"]].document for c in done["citations"]]

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
    progress: Progress = _no_progress,
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
    results, hits = run_retrieval(questions, kb, embedder, configs, progress=progress)
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


# ----------------------------------------------------------------------------------- summaries


def summarize(results: Sequence[QuestionResult]) -> dict:
    """The metrics of some questions' results, in the JSON shape of `zhiku eval --json`."""
    ranked = [r for r in results if r.answerable and r.gold and r.ranked is not None]
    summary: dict = {
        "retrieval": {
            "recall@1": _mean(recall_at(r.ranked, set(r.gold), 1) for r in ranked),
            "recall@5": _mean(recall_at(r.ranked, set(r.gold), 5) for r in ranked),
            "recall@10": _mean(recall_at(r.ranked, set(r.gold), 10) for r in ranked),
            "mrr": _mean(reciprocal_rank(r.ranked, set(r.gold)) for r in ranked),
            "ndcg@10": _mean(ndcg_at(r.ranked, set(r.gold)) for r in ranked),
        },
    }
    generated = [r for r in results if r.answer is not None]
    if generated:
        answerable = [r for r in generated if r.answerable]
        unanswerable = [r for r in generated if not r.answerable]
        summary["answer"] = {
            "em": _mean(0.0 if r.refused else exact_match(r.answer, r.answers) for r in answerable),
            "f1": _mean(0.0 if r.refused else f1_score(r.answer, r.answers) for r in answerable),
        }
        cited = [pid in r.gold for r in answerable for pid in (r.cited or [])]
        summary["citation_precision"] = _mean(cited)
        summary["refusal"] = {
            "accuracy": _mean(float(r.refused) for r in unanswerable),
            "false_refusal_rate": _mean(float(r.refused) for r in answerable),
        }
    latencies = [r.latency_s for r in results]
    summary["latency_s"] = {"p50": percentile(latencies, 50), "p95": percentile(latencies, 95)}
    summary["n_questions"] = len(results)
    return summary


def _mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return float(np.mean(values)) if values else None


def summary_rows(results: dict[str, list[QuestionResult]], set_names: Sequence[str]) -> list[dict]:
    """One row per system and set, then per system over all sets (when there are several)."""
    rows = []
    for system, system_results in results.items():
        scopes = [*set_names, ALL] if len(set_names) > 1 else list(set_names)
        for scope in scopes:
            chosen = [r for r in system_results if scope in (ALL, r.set_name)]
            rows.append({"system": system, "set": scope, **summarize(chosen)})
    return rows


def main_row(rows: Sequence[dict]) -> dict:
    """The product (hybrid) over every set: the row the top level of the JSON file reports."""
    scope = ALL if any(r["set"] == ALL for r in rows) else rows[0]["set"]
    row = next(r for r in rows if r["system"] == HYBRID and r["set"] == scope)
    return {k: v for k, v in row.items() if k not in ("system", "set")}


def report_json(rows: Sequence[dict]) -> dict:
    """The required keys for the product's row; `rows` (every system and set) only when there are more."""
    report = main_row(rows)
    if len(rows) > 1:
        report["rows"] = list(rows)
    return report


COLUMNS = (
    ("R@1", ("retrieval", "recall@1")), ("R@5", ("retrieval", "recall@5")),
    ("R@10", ("retrieval", "recall@10")),
    ("MRR@10", ("retrieval", "mrr")), ("nDCG@10", ("retrieval", "ndcg@10")),
    ("EM", ("answer", "em")), ("F1", ("answer", "f1")), ("cit. prec.", ("citation_precision",)),
    ("refusal acc.", ("refusal", "accuracy")), ("false refusals", ("refusal", "false_refusal_rate")),
    ("p50 s", ("latency_s", "p50")), ("p95 s", ("latency_s", "p95")),
)


def metric(row: dict, path: tuple[str, ...]) -> float | None:
    value: object = row
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value  # type: ignore[return-value]


def markdown_table(rows: Sequence[dict]) -> str:
    def cell(value: float | None) -> str:
        return "—" if value is None else f"{value:.3f}"

    lines = ["| set | system | questions | " + " | ".join(name for name, _ in COLUMNS) + " |",
             "|---|---|---|" + "---|" * len(COLUMNS)]
    for row in rows:
        values = " | ".join(cell(metric(row, path)) for _, path in COLUMNS)
        lines.append(f"| {row['set']} | {row['system']} | {row['n_questions']} | {values} |")
    return "\n".join(lines)


def plot(rows: Sequence[dict], path: Path, title: str) -> None:
    """Grouped bars: the retrieval metrics (and answer F1 when generated) of every row."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    metrics = [("R@1", ("retrieval", "recall@1")), ("R@5", ("retrieval", "recall@5")),
               ("MRR@10", ("retrieval", "mrr")), ("nDCG@10", ("retrieval", "ndcg@10"))]
    if any(metric(r, ("answer", "f1")) is not None for r in rows):
        metrics += [("F1", ("answer", "f1")), ("cit. prec.", ("citation_precision",)),
                    ("refusal acc.", ("refusal", "accuracy"))]
    labels = [f"{r['set']}\n{r['system']}" for r in rows]
    width = 0.8 / len(metrics)
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(8.0, 0.9 * len(rows) + 3), 4.8))
    for i, (name, key) in enumerate(metrics):
        ax.bar(x + i * width, [metric(r, key) or 0.0 for r in rows], width, label=name)
    ax.set_xticks(x + width * (len(metrics) - 1) / 2, labels, fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.set_title(title)
    ax.legend(fontsize=7, ncols=len(metrics), loc="lower left")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
