"""Calibrate `AnswerConfig.min_dense_score`: the best dense cosine below which we refuse unasked.

    python bench/refusal_threshold.py [--embedder NAME] [--per-set N] [--threads N]

Builds one pooled corpus from the DEV sets (the gold passages of N answerable questions per set, the
passages of the articles that N unanswerable questions were asked about when the corpus still holds
them, and N random distractors per set), embeds it, and records for every question its best cosine
over the whole pool. A threshold only refuses questions that nothing in the KB is about; unanswerable
questions about a topic the KB covers (most of SQuAD 2.0's) need the model's own judgement, so the
threshold is chosen to keep false refusals of answerable questions at or below `--max-false-refusal`
and, within that, to refuse as many unanswerable questions as possible. Prints a markdown table and
writes bench/results/refusal_threshold_<embedder>.json.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np

from ingest.embed import load_embedder
from rag.eval_data import passage_text, read_jsonl

REPO = Path(__file__).resolve().parent.parent
QA_DIR = REPO.parent / "shared" / "evaldata" / "qa"
SETS = ("c3", "cmrc2018", "drcd", "dureader_robust", "squad2")


def sample_set(name: str, per_set: int, rng: random.Random) -> tuple[list[dict], dict[str, str]]:
    questions = read_jsonl(QA_DIR / name / "questions.jsonl")
    corpus = {row["id"]: row for row in read_jsonl(QA_DIR / name / "corpus.jsonl")}
    answerable = [q for q in questions if not q["is_impossible"]]
    unanswerable = [q for q in questions if q["is_impossible"]]
    picked = rng.sample(answerable, min(per_set, len(answerable))) + rng.sample(
        unanswerable, min(per_set, len(unanswerable))
    )
    passage_ids = {cid for q in picked for cid in q["context_ids"]}
    asked_docs = {q["doc_id"] for q in picked}
    passage_ids |= {pid for pid, row in corpus.items() if row["doc_id"] in asked_docs}
    passage_ids |= set(rng.sample(sorted(corpus), min(per_set, len(corpus))))
    texts = {pid: passage_text(corpus[pid]) for pid in sorted(passage_ids)}
    return picked, texts


def choose_threshold(answerable: np.ndarray, unanswerable: np.ndarray, max_false_refusal: float) -> float:
    """The highest cosine that refuses at most `max_false_refusal` of the answerable questions."""
    candidates = np.sort(answerable)
    allowed_refusals = int(np.floor(max_false_refusal * len(candidates)))
    # Refusing "score < t" with t = the (allowed+1)-th lowest answerable score refuses exactly `allowed`.
    return float(candidates[allowed_refusals]) if len(candidates) else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--embedder", default="embeddinggemma-300m")
    parser.add_argument("--per-set", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-false-refusal", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    questions: list[dict] = []
    passages: dict[str, str] = {}
    for name in SETS:
        picked, texts = sample_set(name, args.per_set, rng)
        questions += [{**q, "set": name} for q in picked]
        passages |= texts

    embedder = load_embedder(args.embedder, models_dir=REPO / "data" / "models", num_threads=args.threads)
    started = time.perf_counter()
    passage_vectors = embedder.embed_documents(list(passages.values()))
    query_vectors = np.stack([embedder.embed_query(q["question"]) for q in questions])
    embed_s = time.perf_counter() - started
    best = (query_vectors @ passage_vectors.T).max(axis=1)

    is_impossible = np.array([q["is_impossible"] for q in questions])
    threshold = choose_threshold(best[~is_impossible], best[is_impossible], args.max_false_refusal)
    rows = []
    for name in SETS + ("all",):
        in_set = np.array([name in ("all", q["set"]) for q in questions])
        ans, unans = best[in_set & ~is_impossible], best[in_set & is_impossible]
        rows.append(
            {
                "set": name,
                "answerable": int(len(ans)),
                "unanswerable": int(len(unans)),
                "answerable_best_cos_p5": float(np.percentile(ans, 5)) if len(ans) else None,
                "answerable_best_cos_median": float(np.median(ans)) if len(ans) else None,
                "unanswerable_best_cos_median": float(np.median(unans)) if len(unans) else None,
                "false_refusal_rate": float((ans < threshold).mean()) if len(ans) else None,
                "refused_unanswerable": float((unans < threshold).mean()) if len(unans) else None,
            }
        )
    result = {
        "embedder": args.embedder,
        "threshold": threshold,
        "max_false_refusal": args.max_false_refusal,
        "num_passages": len(passages),
        "num_questions": len(questions),
        "embed_s": embed_s,
        "rows": rows,
    }
    out = REPO / "bench" / "results" / f"refusal_threshold_{args.embedder}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    def fmt(value: float | None) -> str:
        return "—" if value is None else f"{value:.3f}"

    print(f"embedder {args.embedder}, {len(passages)} passages, {len(questions)} questions, "
          f"embed {embed_s:.0f} s")
    print(f"**min_dense_score = {threshold:.3f}** "
          f"(false refusals ≤ {args.max_false_refusal:.0%} of answerable)\n")
    print("| set | answerable | unanswerable | answerable best cos p5 | median | unanswerable median "
          "| false refusals | unanswerable refused |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['set']} | {r['answerable']} | {r['unanswerable']} | {fmt(r['answerable_best_cos_p5'])} "
            f"| {fmt(r['answerable_best_cos_median'])} | {fmt(r['unanswerable_best_cos_median'])} "
            f"| {fmt(r['false_refusal_rate'])} | {fmt(r['refused_unanswerable'])} |"
        )


if __name__ == "__main__":
    main()
