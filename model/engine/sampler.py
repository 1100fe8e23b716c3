"""Next-token choice from logits: pure tensor functions, one row per sequence.

Every row carries its own settings (continuous batching mixes greedy and sampled requests in one
step) and its own `torch.Generator`, so a seeded request draws the same tokens whether it runs alone
or next to others. Sampling uses the exponential race (argmax of p / q with q ~ Exp(1)), which is an
exact draw from p without `torch.multinomial`'s host sync.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


MAX_TOP_LOGPROBS = 20  # as OpenAI's API


@dataclass(frozen=True)
class TokenLogprob:
    """A generated token's log-probability and the `top` most likely (token id, log-probability)."""

    token_id: int
    logprob: float
    top: tuple[tuple[int, float], ...]


@dataclass(frozen=True)
class SamplingParams:
    """How one request turns logits into tokens and when it stops.

    `temperature == 0` means greedy; `top_k == 0` and `top_p == 1` disable those filters;
    `repetition_penalty == 1` disables the penalty (CTRL-style: divide positive logits of already
    seen tokens by it, multiply negative ones). `max_tokens=None` fills the context window.
    """

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    seed: int | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    # None: no log-probabilities; n: each generated token's log-probability and the n most likely
    # tokens' (OpenAI's `logprobs` + `top_logprobs`), from the model's distribution before any filter.
    top_logprobs: int | None = None

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if any(not s for s in self.stop):
            raise ValueError("stop strings must be non-empty")
        if self.top_logprobs is not None and not 0 <= self.top_logprobs <= MAX_TOP_LOGPROBS:
            raise ValueError(f"top_logprobs must be in [0, {MAX_TOP_LOGPROBS}], got {self.top_logprobs}")

    @property
    def is_greedy(self) -> bool:
        return self.temperature == 0.0


def apply_repetition_penalty(
    logits: torch.Tensor, seen: torch.Tensor, penalty: torch.Tensor
) -> torch.Tensor:
    """logits [B, V]; seen [B, V] bool (token occurred in prompt or output); penalty [B]."""
    penalty = penalty.to(logits.dtype)[:, None]
    penalised = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalised, logits)


def logits_to_probs(
    logits: torch.Tensor,
    temperature: torch.Tensor,
    top_k: torch.Tensor | None = None,
    top_p: torch.Tensor | None = None,
) -> torch.Tensor:
    """Probabilities [B, V] after temperature, top-k and top-p (nucleus) filtering.

    temperature [B] > 0; top_k [B] int (0 = off for that row); top_p [B] in (0, 1] (1 = off).
    Pass None for a filter no row uses: the caller knows that from the settings, and it spares
    ranking the vocabulary. The nucleus keeps the smallest prefix of the sorted distribution whose
    mass reaches top_p, so the top token is always kept.
    """
    logits = logits.float() / temperature.float()[:, None]
    if top_k is None and top_p is None:
        return torch.softmax(logits, dim=-1)
    vocab_size = logits.shape[-1]
    if top_k is None:
        top_k = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    k = torch.where(top_k > 0, top_k.clamp(max=vocab_size), torch.full_like(top_k, vocab_size))
    if top_p is None:
        # top-k alone: only the k largest matter, far cheaper than sorting the vocabulary.
        ranked, order = torch.topk(logits, int(k.max()), dim=-1)
    else:
        ranked, order = torch.sort(logits, dim=-1, descending=True)
    rank = torch.arange(ranked.shape[-1], device=logits.device)[None, :]
    ranked = ranked.masked_fill(rank >= k[:, None], float("-inf"))
    if top_p is not None:
        ranked_probs = torch.softmax(ranked, dim=-1)
        mass_before = torch.cumsum(ranked_probs, dim=-1) - ranked_probs
        # Rows with top_p == 1 keep everything, even where rounding pushes the cumulative mass past 1.
        outside = (mass_before >= top_p[:, None].float()) & (top_p[:, None] < 1)
        ranked = ranked.masked_fill(outside, float("-inf"))
    filtered = torch.full_like(logits, float("-inf")).scatter_(-1, order, ranked)
    return torch.softmax(filtered, dim=-1)


def sample_from_probs(probs: torch.Tensor, generators: Sequence[torch.Generator]) -> torch.Tensor:
    """One token id per row of probs [B, V], row b drawing its noise from generators[b]."""
    noise = torch.empty_like(probs)
    for row, generator in enumerate(generators):
        noise[row].exponential_(generator=generator)
    return torch.argmax(probs / noise, dim=-1)


def make_generator(seed: int | None, device: str = "cpu") -> torch.Generator:
    generator = torch.Generator(device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


def choose_tokens(
    logits: torch.Tensor,
    params: Sequence[SamplingParams],
    generators: Sequence[torch.Generator],
    seen: torch.Tensor | None = None,
) -> torch.Tensor:
    """Next token id per row of logits [B, V]; `seen` [B, V] bool is needed only for penalties.

    Which filters run is decided from the Python settings, not from tensor values, so choosing
    adds no host sync beyond the caller reading the ids.
    """
    device = logits.device
    penalties = [p.repetition_penalty for p in params]
    if any(x != 1.0 for x in penalties):
        assert seen is not None, "repetition penalty needs the seen-token mask"
        logits = apply_repetition_penalty(logits, seen, torch.tensor(penalties, device=device))
    greedy = torch.argmax(logits, dim=-1)
    sampled_rows = [row for row, p in enumerate(params) if not p.is_greedy]
    if not sampled_rows:
        return greedy
    chosen = [params[r] for r in sampled_rows]
    rows = torch.tensor(sampled_rows, device=device)
    top_k = [p.top_k for p in chosen]
    top_p = [p.top_p for p in chosen]
    probs = logits_to_probs(
        logits[rows],
        torch.tensor([p.temperature for p in chosen], device=device),
        torch.tensor(top_k, device=device) if any(top_k) else None,
        torch.tensor(top_p, device=device) if any(x < 1 for x in top_p) else None,
    )
    drawn = sample_from_probs(probs, [generators[r] for r in sampled_rows])
    return greedy.index_put((rows,), drawn)


def token_logprobs(logits: torch.Tensor, chosen: Sequence[int], top: Sequence[int]) -> list[TokenLogprob]:
    """Per row of logits [B, V]: the log-probability of chosen[b] and of the top[b] most likely tokens."""
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    values, ids = torch.topk(logprobs, max(top), dim=-1)
    picked = logprobs.gather(1, torch.tensor(chosen, device=logits.device)[:, None])[:, 0].tolist()
    values, ids = values.tolist(), ids.tolist()
    return [TokenLogprob(token_id=token, logprob=picked[row],
                         top=tuple(zip(ids[row][:top[row]], values[row][:top[row]])))
            for row, token in enumerate(chosen)]
