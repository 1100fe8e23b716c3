"""The evaluation harness: metrics on hand-made cases, then `zhiku eval` end to end on real QA sets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rag.eval_data import qa_set_dirs, question_text, read_jsonl
from rag.eval_metrics import QuestionResult, exact_match, f1_score, ndcg_at, recall_at, reciprocal_rank, summarize
from rag.eval_report import markdown_table
from tests.rag.tiny_cross_encoder import build_tiny_cross_encoder
from tests.servers import REPO, model_server

TEST_LLM = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
FAST_EMBEDDER = "multilingual-e5-small"
RETRIEVAL_KEYS = {"recall@1", "recall@5", "recall@10", "mrr", "ndcg@10"}


def test_a_multiple_choice_question_is_asked_with_its_choices():
    c3 = {"question": "他们在谈论什么?", "choices": ["旅行", "工作"], "language": "zh"}
    assert question_text(c3) == "他们在谈论什么?\n选项: 旅行 / 工作"
    squad = {"question": "Who wrote it?", "language": "en"}
    assert question_text(squad) == "Who wrote it?"


def test_a_worse_ranking_scores_lower_on_every_ranking_metric():
    gold = {"p1"}
    good, worse = ["p1", "p2", "p3"], ["p2", "p3", "p1"]
    assert reciprocal_rank(good, gold) == 1.0 and reciprocal_rank(worse, gold) == pytest.approx(1 / 3)
    assert ndcg_at(good, gold) == 1.0 and 0 < ndcg_at(worse, gold) < 1.0
    assert recall_at(good, gold, 1) == 1.0 and recall_at(worse, gold, 1) == 0.0
    assert recall_at(worse, gold, 5) == 1.0


def test_gold_beyond_the_cutoff_counts_nothing():
    ranked = [f"x{i}" for i in range(10)] + ["gold"]
    assert reciprocal_rank(ranked, {"gold"}) == 0.0 and ndcg_at(ranked, {"gold"}) == 0.0
    assert recall_at(ranked, {"gold"}, 10) == 0.0


def test_ndcg_counts_a_passage_once_however_many_of_its_chunks_rank():
    # Two chunks of the one gold passage at ranks 1 and 2 are no better than one at rank 1.
    assert ndcg_at(["p1", "p1", "p2"], {"p1"}) == ndcg_at(["p1", "p2", "p3"], {"p1"}) == 1.0
    # With two gold passages, finding only one of them is not perfect.
    assert ndcg_at(["p1", "x", "y"], {"p1", "p2"}) < 1.0


def test_english_answers_use_squad_normalisation():
    assert exact_match("The Eiffel Tower.", ["eiffel tower"]) == 1.0
    assert exact_match("Paris [1]", ["Paris"]) == 1.0  # citation markers are not part of the answer
    # "in 10th century" vs "10th and 11th centuries" after normalisation: one common word.
    assert f1_score("in the 10th century", ["10th and 11th centuries"]) == pytest.approx(2 * (1 / 3 * 1 / 4) / (1 / 3 + 1 / 4))
    assert f1_score("London", ["Paris"]) == 0.0


def test_chinese_answers_are_scored_by_character():
    assert exact_match("锣鼓点。", ["锣鼓点"]) == 1.0
    # 3 of the 5 predicted characters are in the 4-character gold answer.
    assert f1_score("常用锣鼓点", ["锣鼓点子"]) == pytest.approx(2 * (3 / 5) * (3 / 4) / (3 / 5 + 3 / 4))
    assert f1_score("欧洲", ["歐洲"]) == pytest.approx(0.5)  # no script conversion: 洲 matches, 欧/歐 do not


def result(answerable: bool, ranked: list[str], **answer) -> QuestionResult:
    return QuestionResult(set_name="s", system="hybrid", answerable=answerable,
                          gold=frozenset({"p1"} if answerable else ()), answers=("锣鼓点",) if answerable else (),
                          ranked=ranked, latency_s=1.0, **answer)


def test_summary_separates_refusal_accuracy_from_false_refusals():
    results = [
        result(True, ["p1"], answer="锣鼓点 [1]", refused=False, cited=["p1", "p9"]),
        result(True, ["p2", "p1"], answer="资料中没有找到答案。", refused=True, refused_by="model", cited=[]),
        result(False, ["p3"], answer="资料中没有找到答案。", refused=True, refused_by="threshold", cited=[]),
        result(False, ["p4"], answer="资料中没有找到答案。", refused=True, refused_by="judge", cited=[]),
        result(False, ["p5"], answer="胡说 [1]", refused=False, cited=["p5"]),
    ]
    summary = summarize(results)
    assert summary["retrieval"]["recall@1"] == 0.5 and summary["retrieval"]["mrr"] == 0.75
    assert summary["answer"] == {"em": 0.5, "f1": 0.5}  # the refused answerable question scores 0
    assert summary["citation_precision"] == 0.5  # p1 of p1, p9; unanswerable questions' citations not counted
    # one refusal each by the cosine threshold, the model's yes/no judgement and the model's reply
    assert summary["refusal"] == pytest.approx({"accuracy": 2 / 3, "false_refusal_rate": 0.5,
                                                "by_threshold": 1 / 3, "by_judge": 1 / 3})
    assert summary["n_questions"] == 5


def test_a_parent_folder_is_every_set_inside_it(evaldata):
    assert [d.name for d in qa_set_dirs([evaldata / "qa"])] == ["c3", "cmrc2018", "drcd", "dureader_robust", "squad2"]
    assert qa_set_dirs([evaldata / "qa" / "drcd"]) == [evaldata / "qa" / "drcd"]


def zhiku_eval(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app.cli", "eval", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=1800)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """One data folder for the module: its vector cache spares re-embedding a corpus another test embedded."""
    return tmp_path_factory.mktemp("zhiku-data")


def eval_env(data_dir: Path, models_dir: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "ZHIKU_DATA_DIR": str(data_dir), "ZHIKU_MODELS_DIR": str(models_dir),
            "ZHIKU_EMBEDDER": FAST_EMBEDDER, **extra}


@pytest.mark.slow
def test_retrieval_only_eval_on_a_real_set(tmp_path, data_dir, models_dir, evaldata):
    out = tmp_path / "drcd.json"
    run = zhiku_eval([str(evaldata / "qa" / "drcd"), "--no-generate", "--limit", "40", "--json", str(out)],
                     eval_env(data_dir, models_dir, ZHIKU_LLM_BASE_URL="http://127.0.0.1:9/v1"))  # never called
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(out.read_text(encoding="utf-8"))
    assert set(report) == {"retrieval", "latency_s", "n_questions"}
    assert set(report["retrieval"]) == RETRIEVAL_KEYS and report["n_questions"] == 40
    # The first 40 DRCD questions are about a handful of articles in a 385-passage KB: a working
    # pipeline finds most gold passages first; a broken one (wrong ids, empty index) scores near 0.
    assert report["retrieval"]["recall@5"] >= 0.8 and report["retrieval"]["recall@1"] >= 0.6
    assert report["latency_s"]["p95"] >= report["latency_s"]["p50"] > 0
    assert (tmp_path / "drcd.png").stat().st_size > 0
    assert "| drcd | hybrid | 40 |" in run.stdout


def small_set(source: Path, target: Path, passages: int) -> Path:
    """The first passages of a real set, the questions about them and its unanswerable ones (a quick KB)."""
    corpus = read_jsonl(source / "corpus.jsonl")[:passages]
    kept = {row["id"] for row in corpus}
    questions = [q for q in read_jsonl(source / "questions.jsonl") if set(q["context_ids"]) <= kept]
    target.mkdir(parents=True)
    for name, rows in (("corpus.jsonl", corpus), ("questions.jsonl", questions)):
        (target / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return target


@pytest.mark.slow
def test_pooled_eval_with_ablation_reports_every_set_and_ranker(tmp_path, data_dir, models_dir, evaldata):
    out = tmp_path / "pooled.json"
    sets = tmp_path / "sets"
    for name in ("drcd", "squad2"):
        small_set(evaldata / "qa" / name, sets / name, passages=15)
    # A parent folder stands for every set inside it.
    run = zhiku_eval([str(sets), "--no-generate", "--limit", "5", "--ablation", "--json", str(out)],
                     eval_env(data_dir, models_dir))
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["n_questions"] == 10
    rows = {(r["set"], r["system"]): r for r in report["rows"]}
    assert set(rows) == {(s, system) for s in ("drcd", "squad2", "all")
                         for system in ("hybrid", "hybrid, RRF 1:1", "dense only", "bm25 only")}
    assert rows[("all", "hybrid")]["retrieval"] == report["retrieval"]
    assert rows[("drcd", "hybrid")]["n_questions"] == rows[("squad2", "bm25 only")]["n_questions"] == 5


@pytest.mark.slow
def test_a_configured_reranker_is_the_reported_ranking_and_its_gain_a_row(tmp_path, data_dir, models_dir, evaldata):
    out = tmp_path / "reranked.json"
    drcd = small_set(evaldata / "qa" / "drcd", tmp_path / "drcd", passages=15)
    reranker = build_tiny_cross_encoder(tmp_path / "reranker")
    run = zhiku_eval([str(drcd), "--no-generate", "--limit", "8", "--json", str(out)],
                     eval_env(data_dir, models_dir, ZHIKU_RERANKER_PATH=str(reranker)))
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(out.read_text(encoding="utf-8"))
    rows = {r["system"]: r for r in report["rows"]}
    assert set(rows) == {"hybrid", "hybrid, no rerank"}
    assert report["retrieval"] == rows["hybrid"]["retrieval"]
    log = [json.loads(line) for line in out.with_suffix(".questions.jsonl").read_text(encoding="utf-8").splitlines()]
    fused = {line["question_id"]: line["ranked"] for line in log if line["system"] == "hybrid, no rerank"}
    reranked = {line["question_id"]: line["ranked"] for line in log if line["system"] == "hybrid"}
    # The random reranker reorders the fused head (it reads up to 20 candidates, 10 are reported).
    assert fused.keys() == reranked.keys() and any(fused[q] != reranked[q] for q in fused)


@pytest.mark.slow
def test_generating_eval_reports_answers_citations_and_refusals(tmp_path, data_dir, models_dir, evaldata):
    out = tmp_path / "dureader.json"
    with model_server(models_dir / TEST_LLM, tmp_path / "llm.log", "--quant", "int4", "--max-batch-size", "2",
                      "--max-seq-len", "4096", timeout_s=600) as url:
        # Its second question is unanswerable (the article was withheld from the corpus).
        dureader = small_set(evaldata / "qa" / "dureader_robust", tmp_path / "dureader_robust", passages=40)
        run = zhiku_eval([str(dureader), "--limit", "3", "--json", str(out)],
                         eval_env(data_dir, models_dir, ZHIKU_LLM_BASE_URL=f"{url}/v1", ZHIKU_LLM_MODEL=TEST_LLM,
                                  ZHIKU_LLM_MAX_TOKENS="96"))
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(out.read_text(encoding="utf-8"))
    assert set(report) == {"retrieval", "answer", "citation_precision", "refusal", "latency_s", "n_questions"}
    assert set(report["answer"]) == {"em", "f1"} and {"accuracy", "false_refusal_rate"} <= set(report["refusal"])
    assert 0 <= report["answer"]["f1"] <= 1 and report["refusal"]["accuracy"] in (0.0, 1.0)
    assert report["n_questions"] == 3
    log = [json.loads(line) for line in out.with_suffix(".questions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(log) == 3 and all(line["answer"] is not None and line["question_id"] for line in log)


def test_markdown_table_shows_missing_metrics_as_dashes():
    table = markdown_table([{"system": "hybrid", "set": "x", **summarize([result(True, ["p1"])])}])
    assert "| x | hybrid | 1 | 1.000 |" in table and "—" in table
