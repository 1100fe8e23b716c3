"""Answer quality per load-time scheme: the default model in bf16, int8 and int4 on the same grounded questions.

    python bench/quant_quality.py [DIR ...] [--per-set 10] [--seed 0] [--max-tokens 64] [--threads 2]

For a seeded sample of answerable questions of each QA set, the gold passage is the only source (the
"oracle" prompt of `zhiku eval`, so retrieval plays no part) and each scheme answers greedily in its
own engine, one after another in one process. Reported per scheme: EM and F1 against the gold
answers (rag/eval_metrics.py, character-level for Chinese), the share of answers identical to bf16's,
and F1 against bf16's answer. Writes bench/results/quant_quality.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import time
from pathlib import Path

import numpy as np
import torch

from model import load
from model.engine import SamplingParams
from rag.eval import oracle_sources
from rag.eval_data import load_qa_set, qa_set_dirs, question_text
from rag.eval_metrics import exact_match, f1_score
from rag.prompt import build_messages

REPO = Path(__file__).resolve().parent.parent
QA_DIR = REPO.parent / "shared" / "evaldata" / "qa"
MODEL = REPO / "data" / "models" / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
SCHEMES = ("bf16", "int8", "int4")


def sample(dirs: list[Path], per_set: int, seed: int) -> list[tuple[str, dict, list[dict]]]:
    picked = []
    for folder in qa_set_dirs(dirs):
        qa = load_qa_set(folder)
        passages = {p["id"]: p for p in qa.passages}
        answerable = [q for q in qa.questions if q["context_ids"] and not q["is_impossible"]]
        for q in random.Random(seed).sample(answerable, min(per_set, len(answerable))):
            picked.append((qa.name, q, build_messages(question_text(q), oracle_sources(q, passages))))
    return picked


def answers_of(scheme: str, questions: list, max_tokens: int) -> tuple[list[str], float]:
    engine = load(MODEL, dtype="bfloat16", quant=None if scheme == "bf16" else scheme, max_seq_len=4096)
    params = SamplingParams(temperature=0.0, max_tokens=max_tokens)
    started, answers = time.perf_counter(), []
    for _, _, messages in questions:
        answers.append("".join(delta.content for delta in engine.generate(messages, params)).strip())
    seconds = time.perf_counter() - started
    del engine
    gc.collect()
    return answers, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="*", type=Path, default=[QA_DIR])
    parser.add_argument("--per-set", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    questions = sample(args.dirs, args.per_set, args.seed)
    by_scheme = {scheme: answers_of(scheme, questions, args.max_tokens) for scheme in SCHEMES}
    reference = by_scheme["bf16"][0]
    rows = {}
    for scheme, (answers, seconds) in by_scheme.items():
        golds = [q["answers"] for _, q, _ in questions]
        rows[scheme] = {
            "em": float(np.mean([exact_match(a, g) for a, g in zip(answers, golds)])),
            "f1": float(np.mean([f1_score(a, g) for a, g in zip(answers, golds)])),
            "same_as_bf16": float(np.mean([a == r for a, r in zip(answers, reference)])),
            "f1_vs_bf16": float(np.mean([f1_score(a, [r]) for a, r in zip(answers, reference)])),
            "seconds": seconds,
        }
    report = {"model": MODEL.name, "per_set": args.per_set, "seed": args.seed, "max_tokens": args.max_tokens,
              "threads": args.threads, "n_questions": len(questions), "schemes": rows,
              "answers": [{"set": s, "id": q["id"], "gold": q["answers"],
                           **{scheme: by_scheme[scheme][0][i] for scheme in SCHEMES}}
                          for i, (s, q, _) in enumerate(questions)]}
    (REPO / "bench" / "results" / "quant_quality.json").write_text(json.dumps(report, ensure_ascii=False, indent=1),
                                                                  encoding="utf-8")
    print(f"{len(questions)} answerable questions, gold passage as the only source, greedy, "
          f"{args.max_tokens} tokens at most\n")
    print("| scheme | EM | F1 | answer = bf16's | F1 against bf16's answer | seconds |\n|---|---|---|---|---|---|")
    for scheme, row in rows.items():
        print(f"| {scheme} | {row['em']:.3f} | {row['f1']:.3f} | {row['same_as_bf16']:.1%} | "
              f"{row['f1_vs_bf16']:.3f} | {row['seconds']:.0f} |")


if __name__ == "__main__":
    main()
