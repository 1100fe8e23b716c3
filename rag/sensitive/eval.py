"""Precision and recall of `detect` per label on labelled span sets.

    python -m rag.sensitive.eval [--json OUT] [--presidio PATH] [--cn PATH]

(a) the English Presidio synthetic set (../shared/evaldata/pii/, labels mapped below; labels we
have no detector for are reported with recall 0), (b) the generated Chinese set
tests/data/cn_pii.jsonl (labels are our kinds). A prediction counts as a true positive when it
overlaps a still-unmatched gold span of the label its kind maps to (`exact` counts those with the
same boundaries too); predictions of kinds that map to no label of the set are false positives
of their own row.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from rag.sensitive.scan import detect

REPO = Path(__file__).resolve().parents[2]
PRESIDIO_PATH = REPO.parent / "shared" / "evaldata" / "pii" / "presidio_synth_v2.jsonl"
CN_PATH = REPO / "tests" / "data" / "cn_pii.jsonl"

# Our kind -> the Presidio label it stands for. PHONE_NUMBER there is US/European formats, which
# our Chinese phone detectors are not meant to catch; the row shows it.
PRESIDIO_LABEL_OF_KIND: dict[str, str] = {
    "BANK_CARD": "CREDIT_CARD", "EMAIL": "EMAIL_ADDRESS", "CN_MOBILE": "PHONE_NUMBER",
    "CN_LANDLINE": "PHONE_NUMBER", "IBAN": "IBAN_CODE", "IPV4": "IP_ADDRESS",
    "IPV6": "IP_ADDRESS",
}


@dataclass
class LabelScore:
    label: str
    num_gold: int = 0
    num_predicted: int = 0
    true_positives: int = 0
    exact_matches: int = 0

    @property
    def precision(self) -> float | None:
        return self.true_positives / self.num_predicted if self.num_predicted else None

    @property
    def recall(self) -> float | None:
        return self.true_positives / self.num_gold if self.num_gold else None

    def as_dict(self) -> dict:
        return {**asdict(self), "precision": self.precision, "recall": self.recall}


def read_records(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def score(records: Iterable[dict], label_of_kind: Mapping[str, str] | None = None
          ) -> dict[str, LabelScore]:
    """Per-label scores; `label_of_kind` None means the gold labels are our kinds."""
    scores: dict[str, LabelScore] = defaultdict(lambda: LabelScore(""))
    for record in records:
        gold_spans = record["spans"]
        for span in gold_spans:
            scores[span["label"]].num_gold += 1
        matched = [False] * len(gold_spans)
        for finding in detect(record["text"]):
            label = finding.kind if label_of_kind is None else label_of_kind.get(
                finding.kind, f"(unmapped) {finding.kind}")
            scores[label].num_predicted += 1
            for index, span in enumerate(gold_spans):
                if (not matched[index] and span["label"] == label
                        and finding.start < span["end"] and span["start"] < finding.end):
                    matched[index] = True
                    scores[label].true_positives += 1
                    scores[label].exact_matches += (finding.start, finding.end) == (
                        span["start"], span["end"])
                    break
    for label, label_score in scores.items():
        label_score.label = label
    return dict(sorted(scores.items(), key=lambda item: (-item[1].num_gold, item[0])))


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def markdown_table(title: str, scores: Mapping[str, LabelScore]) -> str:
    rows = [f"### {title}", "",
            "| label | gold | predicted | TP | exact | precision | recall |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    rows += [f"| {s.label} | {s.num_gold} | {s.num_predicted} | {s.true_positives} | "
             f"{s.exact_matches} | {_fmt(s.precision)} | {_fmt(s.recall)} |"
             for s in scores.values()]
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description="precision/recall of rag.sensitive.detect")
    parser.add_argument("--json", type=Path, help="write the scores here as JSON")
    parser.add_argument("--presidio", type=Path, default=PRESIDIO_PATH)
    parser.add_argument("--cn", type=Path, default=CN_PATH)
    args = parser.parse_args()
    results = {
        "presidio_synth_v2 (en, DEV)": score(read_records(args.presidio), PRESIDIO_LABEL_OF_KIND),
        "cn_pii (zh, generated)": score(read_records(args.cn)),
    }
    print("\n\n".join(markdown_table(title, scores) for title, scores in results.items()))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(
            {title: [s.as_dict() for s in scores.values()] for title, scores in results.items()},
            ensure_ascii=False, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
