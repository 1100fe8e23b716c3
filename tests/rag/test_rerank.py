"""rag/rerank.py on a tiny random cross-encoder built here (no reranker weights ship, ../shared/MODELS.md):
it loads offline from safetensors only, and the new order is the model's own order."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from rag.rerank import RerankerLoadError, load_reranker, rerank
from rag.retrieve import ScoredChunk
from tests.rag.tiny_cross_encoder import build_tiny_cross_encoder

TEXTS = {
    101: "the backup data 目录",
    102: "warranty of the printer is two years",
    103: "保修期 two years",
    104: "what is the data ?",
    105: "备份 数据",
}
QUERY = "what is the warranty of the printer ?"


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_cross_encoder(tmp_path_factory.mktemp("reranker") / "tiny")


def hit(chunk_id: int, rank: int) -> ScoredChunk:
    return ScoredChunk(chunk_id=chunk_id, score=1 / (60 + rank), dense_rank=rank, bm25_rank=None,
                       dense_score=0.5)


def direct_logits(folder: Path, query: str, texts: list[str]) -> list[float]:
    """The model's scores computed without sentence-transformers: the order rerank() must follow."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        batch = tokenizer([query] * len(texts), texts, padding=True, truncation=True, return_tensors="pt")
        return model(**batch).logits[:, 0].tolist()


def test_loads_offline_from_safetensors(tiny_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No network on the test machine either way; these make any hub lookup an immediate error.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    model = load_reranker(tiny_folder)
    assert model.predict([(QUERY, TEXTS[101])], show_progress_bar=False).shape == (1,)


def test_reorders_the_head_by_the_model_s_scores_and_keeps_the_tail(tiny_folder: Path) -> None:
    model = load_reranker(tiny_folder)
    hits = [hit(chunk_id, rank) for rank, chunk_id in enumerate(TEXTS, start=1)]
    top_n = 4
    head_ids = [h.chunk_id for h in hits[:top_n]]
    logits = direct_logits(tiny_folder, QUERY, [TEXTS[i] for i in head_ids])
    expected = [chunk_id for _, chunk_id in sorted(zip(logits, head_ids), key=lambda pair: -pair[0])]
    assert len(set(logits)) == top_n  # distinct scores, or the order would not test anything

    asked: list[list[int]] = []

    def texts_of(chunk_ids: list[int]) -> dict[int, str]:
        asked.append(chunk_ids)
        return {i: TEXTS[i] for i in chunk_ids}

    reranked = rerank(QUERY, hits, texts_of, model, top_n)
    assert asked == [head_ids]  # only the head is read and scored
    assert [h.chunk_id for h in reranked] == [*expected, hits[-1].chunk_id]
    assert reranked[-1] == hits[-1] and reranked[-1].rerank_score is None
    scores = [h.rerank_score for h in reranked[:top_n]]
    assert scores == sorted(scores, reverse=True)
    by_id = {h.chunk_id: h for h in hits}
    for h in reranked[:top_n]:  # the fused fields are kept
        assert h == replace(by_id[h.chunk_id], rerank_score=h.rerank_score)


def test_a_hit_without_text_stays_after_the_scored_ones(tiny_folder: Path) -> None:
    model = load_reranker(tiny_folder)
    hits = [hit(999, 1), hit(101, 2), hit(102, 3)]
    reranked = rerank(QUERY, hits, lambda ids: {i: TEXTS[i] for i in ids if i in TEXTS}, model, top_n=3)
    assert reranked[-1].chunk_id == 999 and reranked[-1].rerank_score is None
    assert {h.chunk_id for h in reranked[:2]} == {101, 102}


def test_a_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RerankerLoadError, match="does not exist"):
        load_reranker(tmp_path / "nowhere")


def copy_without_weights(source: Path, folder: Path) -> Path:
    folder.mkdir()
    for path in source.iterdir():
        if not path.name.startswith("model.safetensors"):
            (folder / path.name).write_bytes(path.read_bytes())
    return folder


def save_pickled_weights(source: Path, folder: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    state = AutoModelForSequenceClassification.from_pretrained(source).state_dict()
    torch.save(state, folder / "pytorch_model.bin")


def test_pickled_weights_alone_are_refused(tiny_folder: Path, tmp_path: Path) -> None:
    folder = copy_without_weights(tiny_folder, tmp_path / "pickled")
    save_pickled_weights(tiny_folder, folder)
    with pytest.raises(RerankerLoadError, match="only safetensors"):
        load_reranker(folder)


def test_the_loader_itself_refuses_pickled_weights(tiny_folder: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # The second guard: were the folder check ever bypassed, transformers must still not read the .bin.
    folder = copy_without_weights(tiny_folder, tmp_path / "fallback")
    save_pickled_weights(tiny_folder, folder)
    monkeypatch.setattr("rag.rerank.check_reranker_folder", lambda folder: None)
    with pytest.raises(RerankerLoadError, match="cannot load the reranker"):
        load_reranker(folder)


def test_broken_weights_are_a_clear_error(tiny_folder: Path, tmp_path: Path) -> None:
    folder = copy_without_weights(tiny_folder, tmp_path / "broken")
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(RerankerLoadError, match="cannot load the reranker"):
        load_reranker(folder)
