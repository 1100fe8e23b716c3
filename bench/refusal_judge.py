"""Calibrate the refusal judge (rag/judge.py) on the real pipeline, away from the questions the report uses.

    python bench/refusal_judge.py [DIR ...] [--per-set 20] [--seed 1] [--max-false-refusals 0.05]

Builds the pooled KB of the QA sets with the product's code (vectors cached in data/eval-cache/),
samples answerable and unanswerable questions of each set (seed `--seed`, skipping the questions
`zhiku eval --limit 16 --seed 0` reports), retrieves each one's top-k sources as the product does, and
asks the configured model server (ZHIKU_LLM_BASE_URL) the judge's yes/no question. Reports the AUC of
the score, refusal accuracy and false refusals per threshold, and the highest threshold whose false
refusals stay within `--max-false-refusals` (the value for ZHIKU_REFUSAL_JUDGE_MIN_SCORE). Questions the
cosine threshold refuses before the judge is asked are left out. Each source is judged on its own, as
the product does, so it also reports, per margin below the best source
(ZHIKU_REFUSAL_JUDGE_SOURCE_MARGIN), how many sources the answer prompt keeps and how often a gold
passage is among them. Writes bench/results/refusal_judge.json.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from app.services.answering import answer_config
from app.settings import load_settings
from ingest.chunk import ChunkConfig
from ingest.tasks import configured_embedder
from rag.answer import has_evidence
from rag.eval import ABLATIONS, run_retrieval, sources_of
from rag.eval_data import QASet, load_qa_set, qa_set_dirs, question_text
from rag.eval_kb import VectorCache, build_kb
from rag.eval_report import HYBRID
from rag.judge import best_score, judge_sources, sources_kept
from rag.llm import ChatClient

REPO = Path(__file__).resolve().parent.parent
QA_DIR = REPO.parent / "shared" / "evaldata" / "qa"
REPORTED = {"limit": 16, "seed": 0}  # the sample docs/quality.md's generation rows use
THRESHOLDS = np.arange(-1.0, 5.01, 0.25)
MARGINS = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, None)  # None: no margin, every source at or above 0 kept


def calibration_sample(folder: Path, per_set: int, seed: int) -> list[dict]:
    """per_set answerable + per_set unanswerable questions (fewer where a set has fewer), none of them
    in the reported sample."""
    reported = {q["id"] for q in load_qa_set(folder, **REPORTED).questions}
    pool = [q for q in load_qa_set(folder).questions if q["id"] not in reported]
    rng = random.Random(seed)
    picked = []
    for impossible in (False, True):
        group = [q for q in pool if q["is_impossible"] is impossible]
        picked += rng.sample(group, min(per_set, len(group)))
    return picked


def auc(positives: list[float], negatives: list[float]) -> float:
    pos, neg = np.array(positives)[:, None], np.array(negatives)[None, :]
    return float(((pos > neg) + 0.5 * (pos == neg)).mean())


def operating_points(scores: list[dict]) -> list[dict]:
    answerable = [s["score"] for s in scores if s["answerable"]]
    unanswerable = [s["score"] for s in scores if not s["answerable"]]
    return [{"threshold": round(float(t), 2),
             "false_refusals": float(np.mean([s < t for s in answerable])),
             "refusal_accuracy": float(np.mean([s < t for s in unanswerable]))} for t in THRESHOLDS]


def source_margins(rows: list[dict], sources_by_id: dict[str, list], min_source_score: float) -> list[dict]:
    """For answerable questions with a gold passage among their judged sources: per margin, the share
    that keep one in the answer prompt and the mean number of sources kept."""
    judged = [r for r in rows if r["answerable"] and r.get("sources") and any(g for _, _, g in r["sources"])]
    gold = [{pid for pid, _, is_gold in r["sources"] if is_gold} for r in judged]
    points = []
    for margin in MARGINS:
        kept = [sources_kept(sources_by_id[r["id"]], [s for _, s, _ in r["sources"]], min_source_score, margin)
                for r in judged]
        points.append({"margin": margin, "questions": len(judged),
                       "gold_kept": float(np.mean([bool(g & {s.document for s in k}) for g, k in zip(gold, kept)]))
                       if judged else None,
                       "sources_kept": float(np.mean([len(k) for k in kept])) if judged else None})
    return points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="*", type=Path, default=[QA_DIR])
    parser.add_argument("--per-set", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-false-refusals", type=float, default=0.05)
    parser.add_argument("--parallel", type=int, default=2, help="judge requests in flight")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "refusal_judge.json")
    args = parser.parse_args()

    settings = load_settings()
    folders = qa_set_dirs(args.dirs)
    sets = [QASet(f.name, calibration_sample(f, args.per_set, args.seed), load_qa_set(f).passages) for f in folders]
    questions = [(qa.name, q) for qa in sets for q in qa.questions]
    embedder = configured_embedder(settings)
    work = Path(tempfile.mkdtemp(prefix="judge-", dir=settings.data_dir))
    kb = build_kb([p for qa in sets for p in qa.passages], embedder=embedder, folder=work / "index",
                  chunk_config=ChunkConfig(settings.chunk_tokens, settings.chunk_overlap_tokens),
                  cache=VectorCache(settings.data_dir / "eval-cache", settings.embedder))
    _, hits = run_retrieval(questions, kb, embedder, {HYBRID: ABLATIONS[HYBRID]})
    config = answer_config(settings)
    chat = ChatClient(settings.llm_url, settings.llm_model)

    sources_by_id = {q["id"]: sources_of(hits[i], kb, settings.top_k) for i, (_, q) in enumerate(questions)}

    def judged(i: int) -> dict:
        set_name, q = questions[i]
        sources = sources_by_id[q["id"]]
        row = {"set": set_name, "id": q["id"], "answerable": not q["is_impossible"]}
        if not has_evidence(sources, config.min_dense_score):
            return row | {"score": None, "below_threshold": True}
        started = time.perf_counter()
        scores = judge_sources(chat, question_text(q), sources)
        return row | {"score": best_score(scores), "below_threshold": False,
                      "seconds": time.perf_counter() - started,
                      "sources": [(s.document, score, s.document in q["context_ids"])
                                  for s, score in zip(sources, scores)]}

    with ThreadPoolExecutor(args.parallel) as pool:
        rows = list(pool.map(judged, range(len(questions))))
    scored = [r for r in rows if r["score"] is not None]
    points = operating_points(scored)
    within = [p for p in points if p["false_refusals"] <= args.max_false_refusals]
    chosen = max(within, key=lambda p: p["threshold"]) if within else None
    report = {
        "model": settings.llm_model, "embedder": settings.embedder, "chunk_tokens": settings.chunk_tokens,
        "top_k": settings.top_k, "per_set": args.per_set, "seed": args.seed,
        "n_scored": len(scored), "n_below_threshold": len(rows) - len(scored),
        "auc": auc([r["score"] for r in scored if r["answerable"]], [r["score"] for r in scored if not r["answerable"]]),
        "auc_by_set": {qa.name: auc([r["score"] for r in scored if r["set"] == qa.name and r["answerable"]],
                                    [r["score"] for r in scored if r["set"] == qa.name and not r["answerable"]])
                       for qa in sets if any(r["set"] == qa.name and not r["answerable"] for r in scored)},
        "chosen": chosen, "max_false_refusals": args.max_false_refusals,
        "judge_seconds_p50": float(np.median([r["seconds"] for r in scored])) if scored else None,
        "operating_points": points,
        "source_margins": source_margins(rows, sources_by_id, settings.refusal_judge_min_source_score),
        "questions": rows,
    }
    args.out.write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"{len(scored)} judged ({report['n_below_threshold']} refused by the cosine threshold first), "
          f"AUC {report['auc']:.3f}, by set {json.dumps(report['auc_by_set'])}")
    print("| threshold | false refusals (answerable) | refusal accuracy (unanswerable) |\n|---|---|---|")
    for p in points:
        print(f"| {p['threshold']:.2f} | {p['false_refusals']:.3f} | {p['refusal_accuracy']:.3f} |")
    print(f"chosen (false refusals <= {args.max_false_refusals}): {chosen}")
    print("\n| source margin | gold passage kept (answerable) | sources kept |\n|---|---|---|")
    for p in report["source_margins"]:
        if p["questions"]:
            print(f"| {p['margin']} | {p['gold_kept']:.3f} | {p['sources_kept']:.2f} |")


if __name__ == "__main__":
    main()
