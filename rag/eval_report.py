"""Summary rows of an evaluation → the JSON file, the markdown table and the plot of `zhiku eval`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from rag.eval_metrics import RANK_DEPTH, QuestionResult, summarize

HYBRID = "hybrid"  # the product's ranking: the row the top level of the JSON reports
ALL = "all"


def summary_rows(results: dict[str, list[QuestionResult]], set_names: Sequence[str]) -> list[dict]:
    """One row per system and set, then per system over all sets (when there are several)."""
    rows = []
    for system, system_results in results.items():
        scopes = [*set_names, ALL] if len(set_names) > 1 else list(set_names)
        for scope in scopes:
            chosen = [r for r in system_results if scope in (ALL, r.set_name)]
            rows.append({"system": system, "set": scope, **summarize(chosen)})
    return rows


def write_question_log(results: dict[str, list[QuestionResult]], path: Path) -> None:
    """One JSON line per system and question (what was ranked, answered, cited): to see why a metric moved."""
    lines = [{**asdict(r), "gold": sorted(r.gold), "ranked": r.ranked[:RANK_DEPTH] if r.ranked else r.ranked}
             for system_results in results.values() for r in system_results]
    path.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")


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
