"""Sampling functions: each filter does what its name promises, and seeds make draws repeatable."""

from __future__ import annotations

import pytest
import torch

from model.engine.sampler import (
    SamplingParams,
    apply_repetition_penalty,
    choose_tokens,
    logits_to_probs,
    make_generator,
)

PROBS = torch.tensor([0.5, 0.3, 0.15, 0.05])


def _logits(probs: torch.Tensor = PROBS) -> torch.Tensor:
    return probs.log()[None, :]


def _support(probs: torch.Tensor) -> set[int]:
    return set(torch.nonzero(probs[0] > 0).flatten().tolist())


def _draw(params: SamplingParams, num_draws: int, logits: torch.Tensor | None = None) -> list[int]:
    generator = make_generator(params.seed)
    logits = _logits() if logits is None else logits
    return [int(choose_tokens(logits, [params], [generator])[0]) for _ in range(num_draws)]


def test_greedy_picks_the_largest_logit() -> None:
    logits = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 2.9]])
    greedy = [SamplingParams(), SamplingParams()]
    assert choose_tokens(logits, greedy, [make_generator(0)] * 2).tolist() == [1, 0]


def test_temperature_one_samples_the_model_distribution() -> None:
    draws = _draw(SamplingParams(temperature=1.0, seed=7), 4000)
    frequencies = torch.bincount(torch.tensor(draws), minlength=4).float() / len(draws)
    assert torch.allclose(frequencies, PROBS, atol=0.03)


def test_low_temperature_sharpens_and_high_temperature_flattens() -> None:
    one = torch.ones(1)
    cold = logits_to_probs(_logits(), one * 0.1, torch.zeros(1, dtype=torch.long), one)
    hot = logits_to_probs(_logits(), one * 4.0, torch.zeros(1, dtype=torch.long), one)
    assert cold[0, 0] > 0.9
    assert hot[0].max() - hot[0].min() < PROBS.max() - PROBS.min()


@pytest.mark.parametrize(
    ("top_p", "expected"), [(0.5, {0}), (0.7, {0, 1}), (0.81, {0, 1, 2}), (1.0, {0, 1, 2, 3})]
)
def test_top_p_keeps_the_smallest_prefix_reaching_the_mass(top_p: float, expected: set[int]) -> None:
    one = torch.ones(1)
    probs = logits_to_probs(_logits(), one, torch.zeros(1, dtype=torch.long), one * top_p)
    assert _support(probs) == expected
    assert probs.sum().item() == pytest.approx(1.0)


@pytest.mark.parametrize("top_k", [1, 2, 3])
def test_top_k_keeps_the_k_most_likely(top_k: int) -> None:
    one = torch.ones(1)
    probs = logits_to_probs(_logits(), one, torch.tensor([top_k]))
    assert _support(probs) == set(range(top_k))


def test_top_k_one_is_greedy_at_any_temperature() -> None:
    assert set(_draw(SamplingParams(temperature=2.0, top_k=1, seed=1), 50)) == {0}


def test_same_seed_same_tokens_and_other_seed_other_tokens() -> None:
    flat = torch.zeros(1, 1000)
    first = _draw(SamplingParams(temperature=1.0, seed=42), 30, flat)
    assert first == _draw(SamplingParams(temperature=1.0, seed=42), 30, flat)
    assert first != _draw(SamplingParams(temperature=1.0, seed=43), 30, flat)


def test_a_seeded_row_draws_the_same_alone_or_in_a_batch() -> None:
    logits = torch.randn(3, 500, generator=torch.Generator().manual_seed(0))
    seeded = SamplingParams(temperature=0.8, top_p=0.9, seed=5)
    alone = [int(choose_tokens(logits[1:2], [seeded], [g])[0]) for g in [make_generator(5)] * 20]
    batch_params = [SamplingParams(), seeded, SamplingParams(temperature=1.0, top_k=5, seed=9)]
    generators = [make_generator(None), make_generator(5), make_generator(9)]
    batched = [int(choose_tokens(logits, batch_params, generators)[1]) for _ in range(20)]
    assert batched == alone
    assert len(set(alone)) > 1


def test_repetition_penalty_pushes_seen_tokens_down_either_sign() -> None:
    logits = torch.tensor([[2.0, -2.0, 2.0, -2.0]])
    seen = torch.tensor([[True, True, False, False]])
    penalised = apply_repetition_penalty(logits, seen, torch.tensor([2.0]))
    assert penalised.tolist() == [[1.0, -4.0, 2.0, -2.0]]


def test_repetition_penalty_changes_the_greedy_choice() -> None:
    logits = torch.tensor([[3.0, 2.0]])
    seen = torch.tensor([[True, False]])
    params = [SamplingParams(repetition_penalty=2.0)]
    assert choose_tokens(logits, params, [make_generator(0)], seen).tolist() == [1]
    assert choose_tokens(logits, [SamplingParams()], [make_generator(0)], seen).tolist() == [0]


@pytest.mark.parametrize(
    "bad",
    [
        {"temperature": -0.1},
        {"top_p": 0.0},
        {"top_p": 1.5},
        {"top_k": -1},
        {"repetition_penalty": 0.0},
        {"max_tokens": 0},
        {"stop": ("",)},
    ],
)
def test_invalid_settings_are_refused(bad: dict) -> None:
    with pytest.raises(ValueError):
        SamplingParams(**bad)


def test_token_logprobs_are_the_model_distribution_per_row() -> None:
    from model.engine.sampler import token_logprobs

    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0], [0.0, 0.0, 3.0, 0.0]])
    records = token_logprobs(logits, chosen=[1, 2], top=[2, 0])
    expected = torch.log_softmax(logits, dim=-1)
    assert records[0].token_id == 1 and records[0].logprob == pytest.approx(expected[0, 1].item())
    assert [t for t, _ in records[0].top] == [0, 1]
    assert records[0].top[0][1] == pytest.approx(expected[0, 0].item())
    assert records[1].top == () and records[1].logprob == pytest.approx(expected[1, 2].item())


def test_top_logprobs_outside_what_the_api_allows_is_refused() -> None:
    with pytest.raises(ValueError, match="top_logprobs"):
        SamplingParams(top_logprobs=21)
