"""Choose how retrieve() fuses its dense and BM25 candidates, on questions the report does not use.

    python bench/fusion_sweep.py [DIR ...] [--tune-from 200] [--tune-to 400]

Builds the pooled KB of the QA sets with the product's code (rag/eval_kb.py, vectors cached in
data/eval-cache/), ranks each answerable question once per ranker (top 50 dense and BM25
candidates), then scores fusion rules offline: reciprocal-rank fusion over a grid of BM25 weights and
k, and z-score fusion (rag/retrieve.py `zscore_fusion`) over a grid of BM25 weights. Rules are ranked
on questions [tune-from, tune-to) of each set; the best ones and the ranker-alone rows are then
scored on questions [0, tune-from), the ones `zhiku eval --limit 200` reports, so the default is not
fitted to the numbers in docs/quality.md. Prints both tables; writes bench/results/fusion_sweep.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.settings import load_settings
from ingest.chunk import ChunkConfig
from ingest.tasks import configured_embedder
from rag.eval_data import load_qa_set, qa_set_dirs, question_text
from rag.eval_kb import EvalKB, VectorCache, build_kb
from rag.eval_metrics import recall_at, reciprocal_rank
from rag.retrieve import reciprocal_rank_fusion, zscore_fusion

REPO = Path(__file__).resolve().parent.parent
QA_DIR = REPO.parent / "shared" / "evaldata" / "qa"
CANDIDATES = 50
BM25_WEIGHTS = (0.1, 0.2, 0.3, 0.4, 0.5)
RRF_BM25_WEIGHTS = (0.3, 0.5, 0.7, 1.0)
RRF_KS = (5, 10, 20, 60)


@dataclass(frozen=True)
class Ranked:
    set_name: str
    tuning: bool  # in the tuning slice (else in the reported one)
    gold: frozenset[str]
    dense: list[tuple[int, float]]
    bm25: list[tuple[int, float]]


Rule = Callable[[Ranked], list[int]]


def ordered(fused: dict[int, float]) -> list[int]:
    return sorted(fused, key=lambda chunk_id: -fused[chunk_id])


def rules() -> dict[str, Rule]:
    found: dict[str, Rule] = {
        "dense only": lambda r: [i for i, _ in r.dense],
        "bm25 only": lambda r: [i for i, _ in r.bm25],
    }
    for weight in RRF_BM25_WEIGHTS:
        for k in RRF_KS:
            found[f"rrf 1:{weight} k={k}"] = lambda r, w=weight, k=k: ordered(reciprocal_rank_fusion(
                [([i for i, _ in r.dense], 1.0), ([i for i, _ in r.bm25], w)], k=k))
    for weight in BM25_WEIGHTS:
        found[f"zscore {1 - weight:.1f}:{weight}"] = lambda r, w=weight: ordered(
            zscore_fusion([(r.dense, 1 - w), (r.bm25, w)]))
    return found


def rank_questions(dirs: list[Path], tune_from: int, tune_to: int) -> tuple[list[Ranked], EvalKB, list[str]]:
    settings = load_settings()
    embedder = configured_embedder(settings)
    sets = [load_qa_set(folder, tune_to) for folder in qa_set_dirs(dirs)]
    cache = VectorCache(settings.data_dir / "eval-cache", settings.embedder)
    work = Path(tempfile.mkdtemp(prefix="fusion-", dir=settings.data_dir))
    kb = build_kb([p for qa in sets for p in qa.passages], embedder=embedder, folder=work / "index",
                  chunk_config=ChunkConfig(settings.chunk_tokens, settings.chunk_overlap_tokens), cache=cache)
    ranked = []
    for qa in sets:
        for number, q in enumerate(qa.questions):
            if q["is_impossible"] or not q["context_ids"]:
                continue
            text = question_text(q)
            ranked.append(Ranked(qa.name, number >= tune_from, frozenset(q["context_ids"]),
                                 kb.index.search_dense(embedder.embed_query(text), CANDIDATES),
                                 kb.index.search_bm25(text, CANDIDATES)))
    return ranked, kb, [qa.name for qa in sets]


def score(rule: Rule, questions: list[Ranked], kb: EvalKB, set_names: list[str]) -> dict[str, dict[str, float]]:
    scores = {}
    for scope in [*set_names, "all"]:
        chosen = [r for r in questions if scope in ("all", r.set_name)]
        passages = [[kb.passage_of[c] for c in rule(r)] for r in chosen]
        scores[scope] = {
            "recall@1": float(np.mean([recall_at(p, set(r.gold), 1) for p, r in zip(passages, chosen)])),
            "recall@5": float(np.mean([recall_at(p, set(r.gold), 5) for p, r in zip(passages, chosen)])),
            "mrr": float(np.mean([reciprocal_rank(p, set(r.gold)) for p, r in zip(passages, chosen)])),
        }
    return scores


def table(results: dict[str, dict[str, dict[str, float]]], set_names: list[str]) -> str:
    lines = ["| rule | R@1 | R@5 | MRR@10 | " + " | ".join(f"{s} R@1" for s in set_names) + " |",
             "|---|---|---|---|" + "---|" * len(set_names)]
    for name, scores in results.items():
        every = scores["all"]
        lines.append(f"| {name} | {every['recall@1']:.3f} | {every['recall@5']:.3f} | {every['mrr']:.3f} | "
                     + " | ".join(f"{scores[s]['recall@1']:.3f}" for s in set_names) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dirs", nargs="*", type=Path, default=[QA_DIR])
    parser.add_argument("--tune-from", type=int, default=200)
    parser.add_argument("--tune-to", type=int, default=400)
    parser.add_argument("--best", type=int, default=4, help="rules carried to the reported slice")
    args = parser.parse_args()

    ranked, kb, set_names = rank_questions(args.dirs, args.tune_from, args.tune_to)
    all_rules = rules()
    tuning = [r for r in ranked if r.tuning]
    tuned = {name: score(rule, tuning, kb, set_names) for name, rule in all_rules.items()}
    tuned = dict(sorted(tuned.items(), key=lambda item: -item[1]["all"]["mrr"]))
    carried = [*list(tuned)[: args.best], "rrf 1:1.0 k=60", "dense only", "bm25 only"]
    reported = {name: score(all_rules[name], [r for r in ranked if not r.tuning], kb, set_names)
                for name in dict.fromkeys(carried)}
    print(f"## Tuning slice: questions {args.tune_from}-{args.tune_to} of each set ({len(tuning)} answerable)\n")
    print(table(tuned, set_names))
    print(f"\n## Reported slice: questions 0-{args.tune_from} ({len(ranked) - len(tuning)} answerable)\n")
    print(table(reported, set_names))
    out = REPO / "bench" / "results" / "fusion_sweep.json"
    out.write_text(json.dumps({"tuning": tuned, "reported": reported, "sets": set_names,
                               "tune_slice": [args.tune_from, args.tune_to]}, indent=1) + "\n", encoding="utf-8")
    print(f"\n{out}")


if __name__ == "__main__":
    main()
