"""Continuous batching on a tiny random Qwen2 checkpoint loaded through `model.load`.

The checkpoint is built with transformers and saved with `save_pretrained` next to the real
Qwen2.5 tokenizer, so the whole path (loader, model, engine, scheduler) is the product's.
"""

from __future__ import annotations

import queue
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

import model
from model.engine import Engine, FinishReason, RequestTooLongError, SamplingParams, TextDelta
from model.engine.scheduler import DEFAULT_PREFILL_CHUNK_TOKENS
from tests.model.tiny_qwen2 import save_tiny_qwen2

MAX_SEQ_LEN = 96
PROMPTS = ["你好，请介绍一下知识库。", "The quick brown fox", "def add(a, b):\n    return", "1 2 3 4 5 6 7 8 9 10 11"]


@pytest.fixture(scope="module")
def tiny_qwen2_dir(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Path:
    return save_tiny_qwen2(
        tmp_path_factory.mktemp("tiny-qwen2"),
        models_dir / "tokenizers" / "qwen-2.5",
        vocab_size=151936,
        max_seq_len=MAX_SEQ_LEN,
    )


@pytest.fixture(scope="module")
def engine(tiny_qwen2_dir: Path) -> Engine:
    # Two slots for four prompts: requests must wait for, and reuse, freed slots.
    return model.load(tiny_qwen2_dir, dtype="float32", max_batch_size=2, max_seq_len=MAX_SEQ_LEN)


def _tokens(deltas: list[TextDelta]) -> list[int]:
    return [t for d in deltas for t in d.token_ids]


def _run_together(engine: Engine, prompts: list[str], params: SamplingParams) -> list[list[TextDelta]]:
    outputs = [queue.SimpleQueue() for _ in prompts]
    seqs = [engine.submit(engine.encode_prompt(p), params, out.put) for p, out in zip(prompts, outputs)]
    while not all(s.is_finished for s in seqs):
        engine.step()
    results = []
    for out in outputs:
        deltas = []
        while not out.empty():
            deltas.append(out.get())
        results.append(deltas)
    return results


def test_greedy_output_is_the_same_alone_or_batched(engine: Engine) -> None:
    params = SamplingParams(max_tokens=16)
    alone = [_tokens(list(engine.generate(p, params))) for p in PROMPTS]
    together = [_tokens(d) for d in _run_together(engine, PROMPTS, params)]
    assert together == alone
    assert len({tuple(a) for a in alone}) == len(PROMPTS)
    assert all(len(set(a)) > 3 for a in alone)
    assert engine.scheduler.free_slots and len(engine.scheduler.free_slots) == 2


def test_seeded_sampling_is_the_same_alone_or_batched(engine: Engine) -> None:
    params = SamplingParams(temperature=0.9, top_p=0.95, top_k=50, seed=1234, max_tokens=12)
    alone = [_tokens(list(engine.generate(p, params))) for p in PROMPTS[:2]]
    together = [_tokens(d) for d in _run_together(engine, PROMPTS[:2], params)]
    assert together == alone


def test_chat_messages_use_the_chat_template(engine: Engine) -> None:
    messages = [{"role": "user", "content": "hi"}]
    ids = engine.encode_prompt(messages)
    assert engine.tokenizer.decode(ids).endswith("<|im_start|>assistant\n")


def test_max_tokens_ends_with_length_and_counts_usage(engine: Engine) -> None:
    deltas = list(engine.generate("hello", SamplingParams(max_tokens=5)))
    last = deltas[-1]
    assert last.finish_reason is FinishReason.LENGTH
    assert last.num_completion_tokens == len(_tokens(deltas)) == 5
    assert last.num_prompt_tokens == len(engine.encode_prompt("hello"))


def test_stop_string_finishes_the_request_without_emitting_it(engine: Engine) -> None:
    free_text = "".join(d.content for d in engine.generate("hello", SamplingParams(max_tokens=20)))
    stop = free_text[len(free_text) // 2 : len(free_text) // 2 + 2]
    assert stop.strip(), f"need visible text to stop on, got {free_text!r}"
    deltas = list(engine.generate("hello", SamplingParams(max_tokens=20, stop=(stop,))))
    text = "".join(d.content for d in deltas)
    assert deltas[-1].finish_reason is FinishReason.STOP
    assert stop not in text and free_text.startswith(text)


def test_request_that_cannot_fit_the_context_is_refused(engine: Engine) -> None:
    long_prompt = list(range(100, 100 + MAX_SEQ_LEN - 4))
    with pytest.raises(RequestTooLongError, match="context window"):
        engine.submit(long_prompt, SamplingParams(max_tokens=8), lambda d: None)
    with pytest.raises(RequestTooLongError):
        engine.submit(list(range(100, 100 + MAX_SEQ_LEN)), SamplingParams(), lambda d: None)


def test_without_max_tokens_generation_stops_at_the_context_window(engine: Engine) -> None:
    prompt = list(range(1000, 1000 + MAX_SEQ_LEN - 6))
    deltas = list(engine.generate(prompt))
    assert deltas[-1].finish_reason in (FinishReason.LENGTH, FinishReason.STOP)
    assert len(prompt) + deltas[-1].num_completion_tokens <= MAX_SEQ_LEN


def test_cancelled_request_frees_its_slot(engine: Engine) -> None:
    out: queue.SimpleQueue[TextDelta] = queue.SimpleQueue()
    seq = engine.submit(engine.encode_prompt("cancel me"), SamplingParams(max_tokens=50), out.put)
    engine.step()
    seq.cancel()
    engine.step()
    deltas = []
    while not out.empty():
        deltas.append(out.get())
    assert deltas[-1].finish_reason is FinishReason.CANCELLED
    assert sorted(engine.scheduler.free_slots) == [0, 1]


def test_background_loop_serves_concurrent_generate_calls(engine: Engine) -> None:
    params = SamplingParams(max_tokens=8)
    alone = [_tokens(list(engine.generate(p, params))) for p in PROMPTS]
    engine.start()
    try:
        with ThreadPoolExecutor(len(PROMPTS)) as pool:
            together = list(pool.map(lambda p: _tokens(list(engine.generate(p, params))), PROMPTS))
    finally:
        engine.stop()
    assert together == alone


def test_greedy_generation_follows_the_argmax_of_the_full_logits(engine: Engine) -> None:
    # Generation prefills in chunks and runs the LM head on a chunk's last position only, while
    # `engine.logits` returns every position: both must pick the same tokens.
    prompt = engine.encode_prompt(PROMPTS[0] + PROMPTS[2])
    engine.scheduler.prefill_chunk_tokens = 5
    try:
        generated = _tokens(list(engine.generate(prompt, SamplingParams(max_tokens=6))))
    finally:
        engine.scheduler.prefill_chunk_tokens = DEFAULT_PREFILL_CHUNK_TOKENS
    engine.reset()
    logits = engine.logits(torch.tensor([prompt]))
    assert logits.shape == (1, len(prompt), 151936)
    expected = []
    for i in range(6):
        expected.append(int(logits[0, -1].argmax()))
        logits = engine.logits(torch.tensor([[expected[-1]]]), start_pos=len(prompt) + i)
    assert generated == expected
