"""The yes/no evidence score from the first token's log-probabilities (the model call itself runs in
tests/rag/test_answer.py against the real default model)."""

from __future__ import annotations

import math

import pytest

from rag.judge import best_score, evidence_score, judge_messages, sources_kept
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


def test_the_question_scores_as_its_best_source_ignoring_abstentions():
    assert best_score([-1.5, None, 3.0]) == 3.0
    assert best_score([None, None]) is None


def test_sources_judged_below_the_bar_are_left_out_and_abstentions_kept():
    sources = [Source(n=n, chunk_id=n, text=f"text {n}", document="d", page=1, section="", score=0.0)
               for n in (1, 2, 3, 4)]
    kept = sources_kept(sources, [2.5, -0.7, None, 0.0], min_score=0.0)
    assert [s.n for s in kept] == [1, 3, 4]


def test_sources_judged_far_below_the_best_are_left_out():
    sources = [Source(n=n, chunk_id=n, text=f"text {n}", document="d", page=1, section="", score=0.0)
               for n in (1, 2, 3, 4, 5)]
    scores = [2.6, 4.3, None, 2.9, 1.0]
    assert [s.n for s in sources_kept(sources, scores, min_score=0.0, max_below_best=1.5)] == [2, 3, 4]
    assert [s.n for s in sources_kept(sources, scores, min_score=3.0, max_below_best=1.5)] == [2, 3]
    assert [s.n for s in sources_kept(sources, [None, None, None, None, None], 0.0, 1.5)] == [1, 2, 3, 4, 5]
