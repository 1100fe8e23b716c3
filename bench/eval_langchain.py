"""Zhiku against a plain LangChain pipeline, in one run, on the same questions, embedder and model.

    python bench/eval_langchain.py [DIR ...] [--limit N [--seed S]] [--no-generate] [--oracle] [--parallel N]
                                   [--out NAME]

DIR defaults to every set in ../shared/evaldata/qa (one pooled knowledge base). The baseline is what a
LangChain tutorial builds: RecursiveCharacterTextSplitter (500 characters, 50 overlap) over each
passage, the same EmbeddingGemma embedder (the settings' one) behind LangChain's `Embeddings`,
langchain-community's FAISS `similarity_search`, and the same model server with a naive prompt (the
sources pasted in, no numbering, no citation rule, no retrieval-score refusal). Zhiku is `zhiku eval`'s
pipeline (rag/eval.py). Prints one markdown table with both rows per set and the ratios; writes
bench/results/<NAME>.json, .png and .questions.jsonl (every system × question). Chunk vectors are
cached by text (data/eval-cache), so a passage both pipelines index as the same text is embedded once.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from langchain_community.vectorstores import FAISS
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_text_splitters import RecursiveCharacterTextSplitter

from app.services.answering import answer_config as configured_answer_config
from app.settings import load_settings
from ingest.chunk import ChunkConfig
from ingest.embed import Embedder
from ingest.tasks import configured_embedder
from rag import eval as qa_eval
from rag.eval_data import passage_text, question_text
from rag.eval_kb import VectorCache
from rag.eval_metrics import RANK_DEPTH, QuestionResult
from rag.eval_report import HYBRID, markdown_table, metric, plot, write_question_log
from rag.answer import AnswerConfig
from rag.refusal import is_refusal
from rag.llm import ChatClient
from rag.prompt import refusal_text

REPO = Path(__file__).resolve().parent.parent
QA_DIR = REPO.parent / "shared" / "evaldata" / "qa"
BASELINE = "langchain baseline"
CHUNK_CHARS = 500
CHUNK_OVERLAP = 50


class LangChainEmbeddings(Embeddings):
    """Our embedder (its own query/document prompts) behind LangChain's interface."""

    def __init__(self, embedder: Embedder, cache: VectorCache) -> None:
        self._embedder = embedder
        self._cache = cache

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._cache.embed(self._embedder, texts, _progress, "baseline embed").tolist()

    def embed_query(self, text: str) -> list[float]:
        return self._embedder.embed_query(text).tolist()


def _progress(stage: str, done: int, total: int) -> None:
    if done == total or done % 500 == 0:
        print(f"{stage}: {done}/{total}", file=sys.stderr, flush=True)


def build_baseline(passages: list[dict], embeddings: LangChainEmbeddings) -> FAISS:
    splitter = RecursiveCharacterTextSplitter(chunk_size=CHUNK_CHARS, chunk_overlap=CHUNK_OVERLAP)
    documents = splitter.split_documents(
        [Document(page_content=passage_text(p), metadata={"passage": p["id"]}) for p in passages]
    )
    return FAISS.from_documents(documents, embeddings)


def naive_messages(question: str, documents: list[Document]) -> list[dict]:
    context = "\n\n".join(d.page_content for d in documents)
    return [{"role": "user", "content": (
        "Answer the question using the context below. If the context does not contain the answer, "
        f"reply: {refusal_text(question)}\n\nContext:\n{context}\n\nQuestion: {question}")}]


def run_baseline(
    store: FAISS, questions: list[tuple[str, dict]], *, chat: ChatClient | None, config: AnswerConfig | None,
    top_k: int, parallel: int,
) -> list[QuestionResult]:
    results, retrieved = [], []
    for set_name, q in questions:
        started = time.perf_counter()
        documents = store.similarity_search(question_text(q), k=RANK_DEPTH)
        ranked = [d.metadata["passage"] for d in documents]
        results.append(QuestionResult(
            set_name=set_name, system=BASELINE, answerable=not q["is_impossible"],
            gold=frozenset(q["context_ids"]), answers=tuple(q["answers"]), ranked=ranked,
            latency_s=time.perf_counter() - started, question_id=q["id"]))
        retrieved.append(documents[:top_k])
    if chat is None or config is None:
        return results

    def answer_one(i: int) -> None:
        started = time.perf_counter()
        messages = naive_messages(question_text(questions[i][1]), retrieved[i])
        text = "".join(d.content for d in chat.stream(messages, max_tokens=config.max_tokens,
                                                      temperature=config.temperature)).strip()
        results[i].latency_s += time.perf_counter() - started
        results[i].answer, results[i].refused, results[i].cited = text, is_refusal(text), []

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        list(pool.map(answer_one, range(len(results))))
    return results


def ratio_lines(rows: list[dict]) -> list[str]:
    """Zhiku / baseline for the headline metrics of each set (above 1: Zhiku is better)."""
    by = {(r["set"], r["system"]): r for r in rows}
    lines = []
    for (scope, system), ours in by.items():
        theirs = by.get((scope, BASELINE))
        if system != HYBRID or theirs is None:
            continue
        parts = []
        for name, path in (("R@1", ("retrieval", "recall@1")), ("R@5", ("retrieval", "recall@5")),
                           ("MRR", ("retrieval", "mrr")), ("F1", ("answer", "f1"))):
            a, b = metric(ours, path), metric(theirs, path)
            if a is not None and b:
                parts.append(f"{name} ×{a / b:.3f}")
        lines.append(f"- {scope}: " + ", ".join(parts))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dirs", nargs="*", type=Path, default=[QA_DIR])
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--seed", type=int, default=None, help="with --limit: a random sample")
    parser.add_argument("--no-generate", action="store_true")
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--oracle", action="store_true", help="also answer from the gold passages")
    parser.add_argument("--out", default="eval_langchain")
    args = parser.parse_args()

    settings = load_settings()
    embedder = configured_embedder(settings)
    cache = VectorCache(settings.data_dir / "eval-cache", settings.embedder)
    options = qa_eval.EvalOptions(limit=args.limit, seed=args.seed, generate=not args.no_generate,
                                  oracle=args.oracle, top_k=settings.top_k, parallel=args.parallel)
    chat = answer_config = None
    if options.generate:
        # A running server (`zhiku up`, or ZHIKU_LLM_BASE_URL): both pipelines must ask the same one.
        chat = ChatClient(base_url=settings.llm_url, model=settings.llm_model, timeout_s=600.0)
        answer_config = configured_answer_config(settings)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="eval-", dir=settings.data_dir) as work:
        ours = qa_eval.evaluate(
            args.dirs, embedder=embedder, work_dir=Path(work),
            chunk_config=ChunkConfig(settings.chunk_tokens, settings.chunk_overlap_tokens),
            cache=cache, options=options, chat=chat, answer_config=answer_config, progress=_progress,
        )
    ours_s = time.perf_counter() - started
    started = time.perf_counter()
    store = build_baseline([p for qa in ours.sets for p in qa.passages], LangChainEmbeddings(embedder, cache))
    build_s = time.perf_counter() - started
    ours.results[BASELINE] = run_baseline(store, ours.questions, chat=chat, config=answer_config,
                                          top_k=settings.top_k, parallel=args.parallel)
    baseline_s = time.perf_counter() - started
    rows = ours.rows()
    print(markdown_table(rows))
    print("\nZhiku / LangChain baseline:\n" + "\n".join(ratio_lines(rows)))
    out = REPO / "bench" / "results" / f"{args.out}.json"
    out.write_text(json.dumps({
        "embedder": settings.embedder, "llm": settings.llm_model if options.generate else None,
        "limit": args.limit, "seed": args.seed, "sets": ours.set_names,
        "num_passages": sum(len(qa.passages) for qa in ours.sets),
        "baseline": {"chunk_chars": CHUNK_CHARS, "chunk_overlap": CHUNK_OVERLAP, "chunks": store.index.ntotal},
        "seconds": {**ours.seconds, "zhiku_total": ours_s, "baseline_build": build_s,
                    "baseline_total": baseline_s},
        "rows": rows,
    }, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    plot(rows, out.with_suffix(".png"), title="Zhiku vs LangChain baseline")
    write_question_log(ours.results, out.with_suffix(".questions.jsonl"))
    print(f"\n{out}", file=sys.stderr)


if __name__ == "__main__":
    main()
