"""The router's choice from its float32 logits in one kernel: scores, top-k, weights.

torch spends three kernels on it per MoE layer at batch 1 (an element-wise one for the scores,
`topk`, whose radix select alone takes about 5 us for 64 scores, then the gather and
normalisation); here one program per token does all of it with the k-th best found by k passes of
a max over at most a few hundred scores. For routing that drops no group of experts (`greedy`,
or group-limited with every group kept); `model/layers/moe.py` `Gate` keeps the torch path for
the rest and as this kernel's twin.

Input is the router GEMV's float32 partial sums [splits, tokens, experts]
(model/kernels/gemv.py), summed here, so no separate reduction kernel runs either.
"""

from __future__ import annotations

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU installs run Gate's torch path
    triton = None

if triton is not None:
    @triton.jit
    def _route_kernel(partials_ptr, bias_ptr, weights_ptr, ids_ptr, num_splits, num_tokens, num_experts,
                      scale, TOP_K: tl.constexpr, SOFTMAX: tl.constexpr, HAS_BIAS: tl.constexpr,
                      NORMALIZE: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_K: tl.constexpr):
        token = tl.program_id(0)
        experts = tl.arange(0, BLOCK_E)
        is_expert = experts < num_experts
        logits = tl.zeros((BLOCK_E,), dtype=tl.float32)
        for split in range(num_splits):
            logits += tl.load(partials_ptr + (split * num_tokens + token) * num_experts + experts,
                              mask=is_expert, other=0.0)
        if SOFTMAX:
            logits = tl.where(is_expert, logits, float("-inf"))
            exp = tl.exp(logits - tl.max(logits, axis=0))
            scores = exp / tl.sum(exp, axis=0)
        else:
            scores = tl.sigmoid(logits)
        choice = scores
        if HAS_BIAS:
            choice = scores + tl.load(bias_ptr + experts, mask=is_expert, other=0.0)
        choice = tl.where(is_expert, choice, float("-inf"))
        slots = tl.arange(0, BLOCK_K)
        chosen = tl.zeros((BLOCK_K,), dtype=tl.int32)
        weights = tl.zeros((BLOCK_K,), dtype=tl.float32)
        for k in tl.static_range(TOP_K):
            best = tl.max(choice, axis=0)
            expert = tl.min(tl.where(choice == best, experts, BLOCK_E), axis=0)  # lowest index of a tie
            chosen = tl.where(slots == k, expert, chosen)
            weights = tl.where(slots == k, tl.sum(tl.where(experts == expert, scores, 0.0), axis=0), weights)
            choice = tl.where(experts == expert, float("-inf"), choice)
        if NORMALIZE:
            weights = weights / (tl.sum(weights, axis=0) + 1e-20)
        is_slot = slots < TOP_K
        tl.store(weights_ptr + token * TOP_K + slots, weights * scale, mask=is_slot)
        tl.store(ids_ptr + token * TOP_K + slots, chosen.to(tl.int64), mask=is_slot)


def _next_power_of_2(n: int) -> int:
    return 1 << (n - 1).bit_length()  # plain Python, which torch.compile traces


def can_route(partials: torch.Tensor) -> bool:
    return triton is not None and partials.is_cuda


def route(partials: torch.Tensor, bias: torch.Tensor | None, top_k: int, softmax: bool, normalize: bool,
          scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """partials [splits, tokens, experts] float32 -> (weights [tokens, k] float32, expert ids [tokens, k]):
    the top-k of softmax or sigmoid scores (plus `bias` for the choice only), weights the chosen
    unbiased scores, normalised to sum 1 if asked, times `scale`. CUDA only (`can_route`)."""
    num_splits, num_tokens, num_experts = partials.shape
    weights = torch.empty(num_tokens, top_k, dtype=torch.float32, device=partials.device)
    ids = torch.empty(num_tokens, top_k, dtype=torch.int64, device=partials.device)
    _route_kernel[(num_tokens,)](partials.contiguous(), partials if bias is None else bias, weights, ids,
                                 num_splits, num_tokens, num_experts, scale, TOP_K=top_k, SOFTMAX=softmax,
                                 HAS_BIAS=bias is not None, NORMALIZE=normalize,
                                 BLOCK_E=_next_power_of_2(num_experts),
                                 BLOCK_K=_next_power_of_2(top_k))
    return weights, ids
