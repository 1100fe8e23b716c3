"""Throughput of rag.sensitive.detect on mixed Chinese/English text, one core.

    python bench/sensitive_throughput.py [--mb 4] [--repeats 3]

Text: the cmrc2018 (zh) and squad2 (en) passages of ../shared/evaldata/qa, interleaved and
repeated up to --mb megabytes of UTF-8, with a PII value (ID, mobile, card, email, key) inserted
every ~400 characters. Term list: 10,000 generated terms (7,000 Chinese, 3,000 English), ~1% of
them planted in the text. Side by side in one run (timings on a shared machine are noisy, so the
ratios matter more than the absolute numbers): built-in detectors only, built-ins + 10,000 terms,
the term automaton alone, and each built-in detector alone. The process is pinned to one CPU.
Prints a markdown table and writes bench/results/sensitive_throughput.json. Never asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rag.sensitive import BUILTIN_DETECTORS, Term, TermMatcher, detect  # noqa: E402

QA_DIR = REPO.parent / "shared" / "evaldata" / "qa"
RESULTS = REPO / "bench" / "results" / "sensitive_throughput.json"
NUM_TERMS = 10_000
PII_EVERY_CHARS = 400
SEED = 0
TARGET_MB_PER_S = 5.0
PII_SAMPLES = ("11010519491231002X", "138-1234-5678", "6222 0212 3456 7890 128",
               "zhang.san@corp.example.cn", "AKIAIOSFODNN7EXAMPLE", "密码：Abc@12345")


def read_passages(name: str) -> list[str]:
    with (QA_DIR / name / "corpus.jsonl").open(encoding="utf-8") as lines:
        return [json.loads(line)["text"] for line in lines]


def make_terms(rng: random.Random) -> list[Term]:
    hanzi = [chr(code) for code in range(0x4E00, 0x9FA5)]
    zh = {"".join(rng.choice(hanzi) for _ in range(rng.randint(2, 6))) for _ in range(7_000)}
    en = {" ".join(f"{rng.choice('bcdfghklmnprstvz')}{rng.choice('aeiou')}"
                   f"{rng.choice('bcdfghklmnprstvz')}{rng.choice('aeiou')}x{index}"
                   for _ in range(rng.randint(1, 2))) for index in range(3_000)}
    return [Term(text, "bench", rng.choice(("low", "medium", "high")))
            for text in sorted(zh | en)][:NUM_TERMS]


def make_text(target_bytes: int, terms: list[Term], rng: random.Random) -> str:
    zh, en = read_passages("cmrc2018"), read_passages("squad2")
    pieces, num_bytes, index = [], 0, 0
    while num_bytes < target_bytes:
        passage = (zh if index % 2 == 0 else en)[index // 2 % min(len(zh), len(en))]
        index += 1
        for start in range(0, len(passage), PII_EVERY_CHARS):
            piece = passage[start:start + PII_EVERY_CHARS] + " " + rng.choice(PII_SAMPLES) + " "
            if rng.random() < 0.2:
                piece += rng.choice(terms).text + " "
            pieces.append(piece)
            num_bytes += len(piece.encode("utf-8"))
    return "".join(pieces)


def best_seconds(function, text: str, repeats: int) -> tuple[float, int]:
    best, num_findings = float("inf"), 0
    for _ in range(repeats):
        started = time.perf_counter()
        num_findings = len(function(text))
        best = min(best, time.perf_counter() - started)
    return best, num_findings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=4.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    rng = random.Random(SEED)
    terms = make_terms(rng)
    started = time.perf_counter()
    matcher = TermMatcher(terms)
    build_s = time.perf_counter() - started
    text = make_text(int(args.mb * 1_000_000), terms, rng)
    size_mb = len(text.encode("utf-8")) / 1_000_000
    runs = {
        "detect(text, terms=10k) — the product path": lambda t: detect(t, terms=matcher),
        "detect(text) — built-ins + markings": detect,
        "TermMatcher.find — 10k terms alone": matcher.find,
    }
    runs.update({f"  {detector.__name__}": detector for detector in BUILTIN_DETECTORS})
    rows = []
    for name, function in runs.items():
        seconds, num_findings = best_seconds(function, text, args.repeats)
        rows.append({"run": name, "seconds": seconds, "mb_per_s": size_mb / seconds,
                     "num_findings": num_findings})
    product = rows[0]["mb_per_s"]
    print(f"text: {size_mb:.2f} MB UTF-8 ({len(text):,} chars, zh+en), {matcher.num_terms:,} terms "
          f"(automaton built in {build_s:.2f} s), 1 core, best of {args.repeats}\n")
    print("| run | seconds | MB/s | findings | vs product path |")
    print("|---|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['run']} | {row['seconds']:.3f} | {row['mb_per_s']:.1f} | "
              f"{row['num_findings']:,} | {row['mb_per_s'] / product:.2f}x |")
    print(f"\ntarget >= {TARGET_MB_PER_S} MB/s on the product path: "
          f"{'met' if product >= TARGET_MB_PER_S else 'NOT met'} ({product:.1f} MB/s)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"size_mb": size_mb, "num_terms": matcher.num_terms,
                                   "automaton_build_s": build_s, "repeats": args.repeats,
                                   "rows": rows}, ensure_ascii=False, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
