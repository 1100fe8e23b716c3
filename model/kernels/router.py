"""The router's choice from its float32 logits in one kernel: scores, top-k, weights.

torch spends three kernels on it per MoE layer at batch 1 (an element-wise one for the scores,
`topk`, whose radix select alone takes about 5 us for 64 scores, then the gather and
normalisation); here one program per token does all of it with the k-th best found by k passes of
a max over at most a few hundred scores. For routing that drops no group of experts (`greedy`,
or group-limited with every group kept); `model/layers/moe.py` `Gate` keeps the torch path for
the rest and as this kernel's twin.

Input is the router GEMV's float32 partial sums [splits, tokens, experts]
(model/kernels/gemv.py), summed here, so no separate reduction kernel runs either. For up to a few
tokens `logits_and_route` goes one step further: one kernel computes the partial sums and the
last of a token's programs to finish (an atomic count per token) routes it, so the router is one
launch per layer instead of two.
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
    def _choose(partials_ptr, bias_ptr, weights_ptr, ids_ptr, token, num_splits, num_tokens, num_experts, scale,
                TOP_K: tl.constexpr, SOFTMAX: tl.constexpr, HAS_BIAS: tl.constexpr, NORMALIZE: tl.constexpr,
                BLOCK_E: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_S: tl.constexpr):
        """One token's routing from its logits' partial sums (read past L1: other SMs wrote them).
        All splits are loaded at once (BLOCK_S >= num_splits), not one dependent load after another.
        The top-k is TOP_K passes of one max over keys that order by choice, then lower index (a tie
        goes to the lower index, as torch's and the references' top-k on distinct values), and the
        weights are gathered after, together: one reduction per pass where three ran."""
        experts = tl.arange(0, BLOCK_E)
        is_expert = experts < num_experts
        splits = tl.arange(0, BLOCK_S)[:, None]
        logits = tl.sum(tl.load(partials_ptr + (splits * num_tokens + token) * num_experts + experts[None, :],
                                mask=(splits < num_splits) & is_expert[None, :], other=0.0, cache_modifier=".cg"),
                        axis=0)
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
        # float bits as integers in the floats' order (negatives' magnitude bits flipped; + 0.0 makes
        # -0.0 +0.0), above the index reversed so that of equal choices the lower index has the larger key
        bits = (choice + 0.0).to(tl.int32, bitcast=True)
        keys = (tl.where(bits >= 0, bits, bits ^ 0x7FFFFFFF).to(tl.int64) << 32) | (BLOCK_E - 1 - experts).to(tl.int64)
        for k in tl.static_range(TOP_K):
            expert = BLOCK_E - 1 - (tl.max(keys, axis=0) & 0xFFFFFFFF).to(tl.int32)
            chosen = tl.where(slots == k, expert, chosen)
            keys = tl.where(experts == expert, -9223372036854775807 - 1, keys)  # int64's minimum: out of the race
        weights = tl.sum(tl.where(experts[None, :] == chosen[:, None], scores[None, :], 0.0), axis=1)
        is_slot = slots < TOP_K
        weights = tl.where(is_slot, weights, 0.0)  # slots past TOP_K gathered expert 0
        if NORMALIZE:
            weights = weights / (tl.sum(weights, axis=0) + 1e-20)
        tl.store(weights_ptr + token * TOP_K + slots, weights * scale, mask=is_slot)
        tl.store(ids_ptr + token * TOP_K + slots, chosen.to(tl.int64), mask=is_slot)

    @triton.jit
    def _route_kernel(partials_ptr, bias_ptr, weights_ptr, ids_ptr, num_splits, num_tokens, num_experts,
                      scale, TOP_K: tl.constexpr, SOFTMAX: tl.constexpr, HAS_BIAS: tl.constexpr,
                      NORMALIZE: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_K: tl.constexpr,
                      BLOCK_S: tl.constexpr):
        _choose(partials_ptr, bias_ptr, weights_ptr, ids_ptr, tl.program_id(0), num_splits, num_tokens,
                num_experts, scale, TOP_K, SOFTMAX, HAS_BIAS, NORMALIZE, BLOCK_E, BLOCK_K, BLOCK_S)

    @triton.jit
    def _logits_and_route_kernel(x_ptr, w_ptr, partials_ptr, arrivals_ptr, bias_ptr, weights_ptr, ids_ptr,
                                 num_tokens, num_experts, K, k_per_split, scale, TOP_K: tl.constexpr,
                                 SOFTMAX: tl.constexpr, HAS_BIAS: tl.constexpr, NORMALIZE: tl.constexpr,
                                 BLOCK_E: tl.constexpr, BLOCK_TOP: tl.constexpr, BLOCK_N: tl.constexpr,
                                 BLOCK_K: tl.constexpr, BLOCK_S: tl.constexpr):
        """Program (token, n, s): float32 logits of experts n*BLOCK_N.. over K split s into `partials`;
        the token's last program to arrive (counted in arrivals[token], which it resets) routes it."""
        token, split = tl.program_id(0), tl.program_id(2)
        rows = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
        k_start = split * k_per_split
        k_stop = tl.minimum(k_start + k_per_split, K)
        acc = tl.zeros((BLOCK_N,), dtype=tl.float32)
        for k0 in range(0, k_per_split, BLOCK_K):
            cols = k_start + k0 + tl.arange(0, BLOCK_K)
            x = tl.load(x_ptr + token * K + cols, mask=cols < k_stop, other=0.0).to(tl.float32)
            w = tl.load(w_ptr + rows[:, None] * K + cols[None, :],
                        mask=(rows[:, None] < num_experts) & (cols[None, :] < k_stop), other=0.0)
            acc += tl.sum(w.to(tl.float32) * x[None, :], axis=1)
        tl.store(partials_ptr + (split * num_tokens + token) * num_experts + rows, acc, mask=rows < num_experts)
        # acq_rel: this program's partials are visible to whichever program sees the final count
        arrived = tl.atomic_add(arrivals_ptr + token, 1, sem="acq_rel")
        if arrived == tl.num_programs(1) * tl.num_programs(2) - 1:
            _choose(partials_ptr, bias_ptr, weights_ptr, ids_ptr, token, tl.num_programs(2), num_tokens,
                    num_experts, scale, TOP_K, SOFTMAX, HAS_BIAS, NORMALIZE, BLOCK_E, BLOCK_TOP, BLOCK_S)
            tl.atomic_xchg(arrivals_ptr + token, 0)  # ready for the next call (or graph replay)


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
                                 BLOCK_K=_next_power_of_2(top_k), BLOCK_S=_next_power_of_2(num_splits))
    return weights, ids


# K per split 256, not 512: 32 programs of one BLOCK_K each on V2-Lite's router, 5.65 against 6.81 us
# (bench/results/gpu_decode_step_tries.jsonl, router_kernel_us_run2).
_LOGITS_BLOCK_N, _LOGITS_BLOCK_K, _K_PER_SPLIT = 16, 256, 256
_TARGET_PROGRAMS = 132  # one per SM of an H100/H200: the router's few KB are latency, not bandwidth


def logits_and_route(x: torch.Tensor, weight: torch.Tensor, arrivals: torch.Tensor, bias: torch.Tensor | None,
                     top_k: int, softmax: bool, normalize: bool, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """`route` of the float32 logits x [tokens, D] @ weight [experts, D]^T, in one kernel: the router
    GEMV split along D, then routing by the last program of each token (the route kernel's own
    launch, ~3 us at batch 1, saved). arrivals: int32 zeros [>= tokens], left zero. CUDA only."""
    num_tokens, k = x.shape
    num_experts = weight.shape[0]
    row_blocks = -(-num_experts // _LOGITS_BLOCK_N)
    splits = max(1, min(-(-_TARGET_PROGRAMS // (num_tokens * row_blocks)), k // _K_PER_SPLIT))
    k_per_split = -(-k // (splits * _K_PER_SPLIT)) * _K_PER_SPLIT
    splits = -(-k // k_per_split)
    partials = torch.empty(splits, num_tokens, num_experts, dtype=torch.float32, device=x.device)
    weights = torch.empty(num_tokens, top_k, dtype=torch.float32, device=x.device)
    ids = torch.empty(num_tokens, top_k, dtype=torch.int64, device=x.device)
    _logits_and_route_kernel[(num_tokens, row_blocks, splits)](
        x.contiguous(), weight, partials, arrivals, x if bias is None else bias, weights, ids, num_tokens,
        num_experts, k, k_per_split, scale, TOP_K=top_k, SOFTMAX=softmax, HAS_BIAS=bias is not None,
        NORMALIZE=normalize, BLOCK_E=_next_power_of_2(num_experts), BLOCK_TOP=_next_power_of_2(top_k),
        BLOCK_N=_LOGITS_BLOCK_N, BLOCK_K=_LOGITS_BLOCK_K, BLOCK_S=_next_power_of_2(splits), num_warps=4)
    return weights, ids
