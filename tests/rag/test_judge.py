"""The yes/no evidence score from the first token's log-probabilities (the model call itself runs in
tests/rag/test_answer.py against the real default model)."""

from __future__ import annotations

import math

import pytest

from rag.judge import evidence_score, judge_messages
from rag.prompt import Source


def test_score_is_the_log_odds_of_yes_against_no_over_their_spellings():
    first_token = {"是": math.log(0.6), "Yes": math.log(0.2), "否": math.log(0.1), " no": math.log(0.05),
                   "资料": math.log(0.05)}
    assert evidence_score(first_token) == pytest.approx(math.log(0.8 / 0.15))


def test_a_side_missing_from_the_list_counts_as_the_least_likely_listed_token():
    # "no" is not among the alternatives: its probability is at most the smallest listed one.
    first_token = {"Yes": -0.1, "The": -3.0, "资料": -6.0}
    assert evidence_score(first_token) == pytest.approx(-0.1 - -6.0)
    assert evidence_score({"否": -0.2, "The": -4.0}) == pytest.approx(-4.0 - -0.2)


def test_the_judge_abstains_when_the_reply_starts_with_neither():
    # What a reasoning model's first token looks like: its thoughts, not a verdict.
    assert evidence_score({"好的": -0.3, "Okay": -1.5, "首先": -2.0}) is None


def test_judge_prompt_numbers_the_sources_and_keeps_the_question():
    sources = [Source(n=1, chunk_id=7, text="备份保存在 /var/backups。", document="ops.md", page=None,
                      section="", score=0.1)]
    messages = judge_messages("备份在哪里？", sources)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert "[1] (ops.md) 备份保存在 /var/backups。" in messages[1]["content"]
    assert messages[1]["content"].endswith("备份在哪里？")
