"""Every registered embedder on real passages: retrieval sanity in Chinese and English, vector shape and
norm, token counts, and loading with the hub unreachable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ingest.embed import EMBEDDERS, EmbedderFilesMissing, UnknownEmbedder, load_embedder

REPO = Path(__file__).resolve().parents[2]
DIMS = {"embeddinggemma-300m": 768, "embeddinggemma-300m-bf16": 768, "embeddinggemma-300m-int8": 768,
        "multilingual-e5-small": 384}


@pytest.fixture(scope="module", params=sorted(EMBEDDERS))
def embedder(request, models_dir):
    return load_embedder(request.param, models_dir=models_dir, num_threads=1)


def question_with_distractors(evaldata: Path, qa_set: str, distractors: int = 4) -> tuple[str, list[str]]:
    """A real question, its gold passage first, then other passages of the same corpus."""
    with open(evaldata / "qa" / qa_set / "corpus.jsonl", encoding="utf-8") as handle:
        corpus = {p["id"]: p["text"] for p in map(json.loads, handle)}
    with open(evaldata / "qa" / qa_set / "questions.jsonl", encoding="utf-8") as handle:
        question = next(q for q in map(json.loads, handle) if q["answers"] and q["context_ids"])
    gold = question["context_ids"][0]
    others = [text for pid, text in corpus.items() if pid != gold][:distractors]
    return question["question"], [corpus[gold], *others]


@pytest.mark.parametrize("qa_set", ["cmrc2018", "squad2"])
def test_gold_passage_ranks_first(embedder, evaldata, qa_set):
    question, passages = question_with_distractors(evaldata, qa_set)
    scores = embedder.embed_documents(passages) @ embedder.embed_query(question)
    assert int(np.argmax(scores)) == 0, scores


def test_vectors_are_unit_float32_of_the_declared_dim(embedder):
    docs = embedder.embed_documents(["知库把文档切块后写入向量索引。", "Zhiku indexes documents."])
    query = embedder.embed_query("如何备份数据？")
    assert embedder.dim == DIMS[embedder.name]
    assert docs.shape == (2, embedder.dim) and docs.dtype == np.float32
    assert query.shape == (embedder.dim,) and query.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(docs, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(query), 1.0, atol=1e-5)
    assert embedder.embed_documents([]).shape == (0, embedder.dim)


def test_same_text_same_vector_in_any_batch(embedder):
    text = "停止服务后把备份目录复制回来。"
    alone = embedder.embed_documents([text])[0]
    batched = embedder.embed_documents(["一个更长的句子，用来让批次里出现填充。" * 5, text])[1]
    # int8 activations are quantized against the batch's range (per-token scales, one zero point),
    # so the int8 embedder is close to, not exactly, batch-independent.
    assert float(alone @ batched) > (0.98 if embedder.name.endswith("int8") else 0.999)


def test_gemma_token_counts_match_its_tokenizer(models_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(models_dir / "embeddinggemma-300m")
    embedder = load_embedder("embeddinggemma-300m-int8", models_dir=models_dir)
    for text in ["锣鼓经是大陆传统器乐及戏曲里面常用的打击乐记谱方法。", "Back up the data directory.", ""]:
        assert embedder.count_tokens(text) == len(tokenizer(text, add_special_tokens=False)["input_ids"])


def test_e5_token_counts_are_the_texts_own_sentencepiece_tokens(models_dir):
    embedder = load_embedder("multilingual-e5-small", models_dir=models_dir)
    # XLM-RoBERTa's vocabulary: "▁Hello", "▁world"; prompt and special tokens are not counted.
    assert embedder.count_tokens("Hello world") == 2
    assert embedder.count_tokens("") == 0
    # Counts are exact beyond the 512-token window, so chunk budgets can rely on them.
    assert embedder.count_tokens(" ".join(["Hello world"] * 400)) == 800


def test_unknown_name_and_missing_files_are_clear_errors(tmp_path):
    with pytest.raises(UnknownEmbedder, match="multilingual-e5-small"):
        load_embedder("bge-m3", models_dir=tmp_path)
    with pytest.raises(EmbedderFilesMissing, match="embeddinggemma-300m"):
        load_embedder("embeddinggemma-300m", models_dir=tmp_path)


@pytest.mark.parametrize("name", ["embeddinggemma-300m-int8", "multilingual-e5-small"])
def test_loads_with_the_hub_offline_and_an_empty_cache(models_dir, tmp_path, name):
    script = (
        "from pathlib import Path; from ingest.embed import load_embedder; "
        f"e = load_embedder({name!r}, models_dir=Path({str(models_dir)!r}), num_threads=1); "
        "print(e.embed_documents(['离线也能嵌入。']).shape)"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith(f"(1, {DIMS[name]})")
    assert not any((tmp_path / "hf").rglob("*.safetensors"))
