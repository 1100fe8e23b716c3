import importlib.util
import json
from pathlib import Path

import pytest

from rag.sensitive.eval import PRESIDIO_LABEL_OF_KIND, read_records, score

DATA = Path(__file__).resolve().parents[1] / "data"
CHECKSUM_BACKED = ("CN_ID", "BANK_CARD", "USCC", "CN_MOBILE", "EMAIL")


def load_generator():
    spec = importlib.util.spec_from_file_location("make_cn_pii", DATA / "make_cn_pii.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generator_is_deterministic_and_matches_the_committed_file():
    generator = load_generator()
    first, second = generator.make_records(300), generator.make_records(300)
    assert first == second
    committed = read_records(DATA / "cn_pii.jsonl")
    assert generator.make_records(len(committed)) == committed


def test_generated_spans_index_their_values_and_include_hard_negatives():
    records = read_records(DATA / "cn_pii.jsonl")
    for record in records:
        for span in record["spans"]:
            assert record["text"][span["start"]:span["end"]] == span["value"]
    templates = " ".join(record["template_id"] for record in records)
    assert "neg0/" in templates and "neg3/" in templates  # bad-checksum IDs, timestamps
    assert sum(not record["has_pii"] for record in records) > 100


def test_checksum_backed_kinds_meet_targets_on_the_chinese_set():
    scores = score(read_records(DATA / "cn_pii.jsonl"))
    for kind in CHECKSUM_BACKED:
        assert scores[kind].recall >= 0.98, scores[kind]
        assert scores[kind].precision >= 0.95, scores[kind]


def test_presidio_rows_cover_every_gold_label(evaldata):
    records = read_records(evaldata / "pii" / "presidio_synth_v2.jsonl")
    scores = score(records, PRESIDIO_LABEL_OF_KIND)
    gold_labels = {span["label"] for record in records for span in record["spans"]}
    assert gold_labels <= set(scores)
    assert scores["EMAIL_ADDRESS"].recall == 1.0
    assert scores["CREDIT_CARD"].precision >= 0.95
    json.dumps({label: s.as_dict() for label, s in scores.items()})  # serialisable for --json


@pytest.mark.parametrize("kind", CHECKSUM_BACKED)
def test_every_checksum_backed_kind_is_in_the_chinese_set(kind):
    labels = {span["label"] for record in read_records(DATA / "cn_pii.jsonl")
              for span in record["spans"]}
    assert kind in labels
