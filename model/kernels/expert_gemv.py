"""Decode-time expert projections: out[p] = W[expert[p]] @ x[p] for a few (token, expert) pairs.

At batch 1 a MoE layer multiplies one vector by each of k experts' matrices: pure weight reading.
A grouped GEMM pads every pair to a 64-row tile and reached about 41% of the copy bandwidth on
V2-Lite-sized experts (bench/results/gpu_moe.json); a GEMV that streams each chosen expert's rows
once, spread over all SMs, needs no sort of the pairs either. With many pairs the same expert is
read once per pair, so the grouped GEMM takes over from GEMV_MAX_PAIRS on (`model/layers/moe.py`).

`expert_gemv` runs the Triton kernel on CUDA and the same product through torch elsewhere.
"""

from __future__ import annotations

import torch

GEMV_MAX_PAIRS = 16

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU installs: the torch path below is the one they run
    triton = None

if triton is not None:
    @triton.autotune(
        configs=[triton.Config({"BLOCK_N": n, "BLOCK_K": k}, num_warps=w, num_stages=s)
                 for n, k, w, s in ((16, 256, 4, 3), (32, 128, 4, 4), (32, 256, 4, 3), (64, 128, 8, 3),
                                    (8, 512, 4, 3))],
        key=["N", "K"],
    )
    @triton.jit
    def _expert_gemv_kernel(x_ptr, w_ptr, ids_ptr, out_ptr, first_expert, num_local, N, K,
                            BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
        pair = tl.program_id(0)
        rows = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
        expert = tl.load(ids_ptr + pair) - first_expert
        is_ours = (expert >= 0) & (expert < num_local)
        # Another rank's expert: every load below is masked off (no memory read) and the row is zero.
        expert = tl.where(is_ours, expert, 0)
        w_rows = w_ptr + expert.to(tl.int64) * N * K + rows[:, None].to(tl.int64) * K
        row_mask = (rows[:, None] < N) & is_ours
        acc = tl.zeros((BLOCK_N,), dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
            cols = k0 + tl.arange(0, BLOCK_K)
            x = tl.load(x_ptr + pair * K + cols, mask=cols < K, other=0.0).to(tl.float32)
            w = tl.load(w_rows + cols[None, :], mask=row_mask & (cols[None, :] < K), other=0.0)
            acc += tl.sum(w.to(tl.float32) * x[None, :], axis=1)
        tl.store(out_ptr + pair * N + rows, acc.to(out_ptr.dtype.element_ty), mask=rows < N)


def expert_gemv(x: torch.Tensor, weights: torch.Tensor, expert_ids: torch.Tensor, first_expert: int = 0) -> torch.Tensor:
    """x [P, K], weights [E, N, K] (this rank's experts first_expert..), expert_ids [P] -> [P, N];
    a row whose expert is another rank's is zero."""
    num_pairs, num_local = x.shape[0], weights.shape[0]
    if triton is not None and x.is_cuda:
        x, ids = x.contiguous(), expert_ids.contiguous()
        out = torch.empty(num_pairs, weights.shape[1], dtype=x.dtype, device=x.device)
        grid = lambda meta: (num_pairs, triton.cdiv(weights.shape[1], meta["BLOCK_N"]))  # noqa: E731
        _expert_gemv_kernel[grid](x, weights, ids, out, first_expert, num_local, weights.shape[1], weights.shape[2])
        return out
    local = expert_ids - first_expert
    is_ours = (local >= 0) & (local < num_local)
    picked = weights[local.clamp(0, num_local - 1)]  # [P, N, K]: a copy, fine off the GPU hot path
    out = torch.bmm(picked, x[:, :, None])[:, :, 0]
    return out.masked_fill(~is_ours[:, None], 0)
