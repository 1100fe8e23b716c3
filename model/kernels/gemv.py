"""Decode-time matrix-vector products: out[p] = W_p @ x[p] for a few rows of activations.

At batch 1 a decode step multiplies one vector by each matrix: pure weight reading. Two users:
  experts  W_p = W[expert[p]] for a few (token, expert) pairs. A grouped GEMM pads every pair to a
           64-row tile and reached about 41% of the copy bandwidth on V2-Lite-sized experts
           (bench/results/gpu_moe.json); a GEMV streams each chosen expert's rows once, spread over
           all SMs, and needs no sort of the pairs. With many pairs the same expert is read once per
           pair, so the grouped GEMM takes over from GEMV_MAX_PAIRS on (`model/layers/moe.py`).
  router   float32 logits of bf16 activations and weights (`linear_float32_partials`). torch makes
           a float32 copy of the weight for that on every step, then runs a cuBLAS float32 GEMV:
           10.5 us against 5-6 here for V2-Lite's 64 x 2048 router (bench/results/gpu_moe.json,
           `dense_gemv_batch1`). With few output rows the kernel also splits K into float32 partial
           sums, so more SMs read; the consumer adds them (model/kernels/router.py).
The bf16 projections stay with cuBLAS: on the 2-12 MB matrices of a V2-Lite-sized layer it was
faster than this kernel with split K too (docs/gpu.md).

Each function runs the Triton kernel on CUDA and the same product through torch elsewhere.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

GEMV_MAX_PAIRS = 16
# Each row of x reads the weight once more (from L2 when the rows' blocks run together); past a few
# rows a tiled GEMM, which reads it once, is the better choice.
GEMV_MAX_ROWS = 4
_SPLIT_K_STEP = 512  # K per split is a multiple of every BLOCK_K below: no partial tile inside a split
# About 4 blocks per SM of an H100/H200 (132 SMs) keep HBM busy. A constant, not read off the
# device, so torch.compile traces the choice; on another GPU only the parallelism differs, not the result.
_TARGET_BLOCKS = 4 * 132
_TYPICAL_BLOCK_N = 16

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU installs: the torch paths below are the ones they run
    triton = None

if triton is not None:
    @triton.autotune(
        configs=[triton.Config({"BLOCK_N": n, "BLOCK_K": k}, num_warps=w, num_stages=s)
                 for n, k, w, s in ((16, 256, 4, 3), (32, 128, 4, 4), (32, 256, 4, 3), (64, 128, 8, 3),
                                    (8, 512, 4, 3), (16, 512, 4, 2), (64, 256, 8, 3), (128, 128, 8, 3),
                                    (32, 512, 8, 2))],
        key=["N", "K", "k_per_split"],
    )
    @triton.jit
    def _gemv_kernel(x_ptr, w_ptr, ids_ptr, out_ptr, first_expert, num_local, N, K, k_per_split,
                     ROUTED: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
        """Program (p, n, s): rows n*BLOCK_N.. of W_p times x[p] over K split s; out [splits, P, N]."""
        pair, split = tl.program_id(0), tl.program_id(2)
        rows = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
        if ROUTED:
            expert = tl.load(ids_ptr + pair) - first_expert
            is_ours = (expert >= 0) & (expert < num_local)
            # Another rank's expert: every load below is masked off (no memory read) and the row is zero.
            expert = tl.where(is_ours, expert, 0)
            w_rows = w_ptr + expert.to(tl.int64) * N * K + rows[:, None].to(tl.int64) * K
            row_mask = (rows[:, None] < N) & is_ours
        else:
            w_rows = w_ptr + rows[:, None].to(tl.int64) * K
            row_mask = rows[:, None] < N
        k_start = split * k_per_split
        k_stop = tl.minimum(k_start + k_per_split, K)
        acc = tl.zeros((BLOCK_N,), dtype=tl.float32)
        for k0 in range(0, k_per_split, BLOCK_K):
            cols = k_start + k0 + tl.arange(0, BLOCK_K)
            x = tl.load(x_ptr + pair * K + cols, mask=cols < k_stop, other=0.0).to(tl.float32)
            w = tl.load(w_rows + cols[None, :], mask=row_mask & (cols[None, :] < k_stop), other=0.0)
            acc += tl.sum(w.to(tl.float32) * x[None, :], axis=1)
        out_rows = out_ptr + (split * tl.num_programs(0) + pair).to(tl.int64) * N + rows
        tl.store(out_rows, acc.to(out_ptr.dtype.element_ty), mask=rows < N)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)  # plain Python, which torch.compile traces (it would not step into triton's own)


def _launch(x: torch.Tensor, weights: torch.Tensor, ids: torch.Tensor | None, first_expert: int,
            out_dtype: torch.dtype, splits: int) -> torch.Tensor:
    """out [splits, P, N] from the kernel, over `splits` slices of K (out_dtype if one, else float32)."""
    num_pairs, k = x.shape
    n = weights.shape[-2]
    k_per_split = _cdiv(_cdiv(k, splits), _SPLIT_K_STEP) * _SPLIT_K_STEP
    splits = _cdiv(k, k_per_split)
    dtype = out_dtype if splits == 1 else torch.float32
    out = torch.empty(splits, num_pairs, n, dtype=dtype, device=x.device)
    grid = lambda meta: (num_pairs, triton.cdiv(n, meta["BLOCK_N"]), splits)  # noqa: E731
    routed = ids is not None
    _gemv_kernel[grid](x, weights, ids if routed else x, out, first_expert, weights.shape[0] if routed else 1,
                       n, k, k_per_split, ROUTED=routed)
    return out


def _splits_for(num_pairs: int, n: int, k: int) -> int:
    """Slices of K that make about _TARGET_BLOCKS blocks, each slice _SPLIT_K_STEP or more of K."""
    wanted = _cdiv(_TARGET_BLOCKS, num_pairs * _cdiv(n, _TYPICAL_BLOCK_N))
    return max(1, min(wanted, k // _SPLIT_K_STEP))


def expert_gemv(x: torch.Tensor, weights: torch.Tensor, expert_ids: torch.Tensor, first_expert: int = 0) -> torch.Tensor:
    """x [P, K], weights [E, N, K] (this rank's experts first_expert..), expert_ids [P] -> [P, N];
    a row whose expert is another rank's is zero."""
    num_local = weights.shape[0]
    if triton is not None and x.is_cuda:
        return _launch(x.contiguous(), weights, expert_ids.contiguous(), first_expert, x.dtype, splits=1)[0]
    local = expert_ids - first_expert
    is_ours = (local >= 0) & (local < num_local)
    picked = weights[local.clamp(0, num_local - 1)]  # [P, N, K]: a copy, fine off the GPU hot path
    out = torch.bmm(picked, x[:, :, None])[:, :, 0]
    return out.masked_fill(~is_ours[:, None], 0)


def linear_float32_partials(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x [R, K] @ weight [N, K]^T in float32 products and sums, as x.float() @ weight.float().T, left
    as partial sums [splits, R, N] for the consumer to add: the GEMV kernel, split along K, for up
    to GEMV_MAX_ROWS rows on CUDA; torch otherwise (one split)."""
    rows = x.shape[0]
    if triton is None or not x.is_cuda or rows > GEMV_MAX_ROWS:
        return F.linear(x.float(), weight.float())[None]
    splits = _splits_for(rows, weight.shape[0], weight.shape[1])
    return _launch(x.contiguous(), weight, None, 0, torch.float32, splits)
