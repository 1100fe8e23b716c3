"""Decode-time matrix-vector products: out[p] = W_p @ x[p] for a few rows of activations.

At batch 1 a decode step multiplies one vector by each matrix: pure weight reading. Two users:
  experts  W_p = W[expert] for a few (token, expert) pairs. A grouped GEMM pads every pair to a
           64-row tile and reached about 41% of the copy bandwidth on V2-Lite-sized experts
           (bench/results/gpu_moe.json); a GEMV streams each chosen expert's rows once, spread over
           all SMs, and needs no sort of the pairs. With many pairs the same expert is read once per
           pair, so the grouped GEMM takes over from GEMV_MAX_PAIRS on (`model/layers/moe.py`).
           The shared experts can ride along as `SharedOperand` pairs every token has, read in
           place from their own (merged) weights: at batch 1 that saves the separate cuBLAS GEMVs
           and element-wise kernels of the shared MLP, each mostly launch and ramp-up (docs/gpu.md).
           The down projection's input, silu(gate) * up, is formed while loading (`glu`), so no
           element-wise kernel runs between the two GEMVs. Routed experts may be stored as
           float8_e4m3fn with one float32 scale per FP8_BLOCK x FP8_BLOCK tile (as DeepSeek
           publishes V3/R1), dequantized in registers: half the bytes of bf16.
  router   float32 logits of bf16 activations and weights (`linear_float32_partials`). torch makes
           a float32 copy of the weight for that on every step, then runs a cuBLAS float32 GEMV:
           10.5 us against 5-6 here for V2-Lite's 64 x 2048 router (bench/results/gpu_moe.json,
           `dense_gemv_batch1`). With few output rows the kernel also splits K into float32 partial
           sums, so more SMs read; the consumer adds them (model/kernels/router.py).
The bf16 projections stay with cuBLAS: on the 2-15 MB matrices of a V2-Lite-sized layer it was
faster than this kernel, also with one well-chosen configuration and no split of K (8.7 against
6.9 us for the merged q+kv_a, 8.7 against 6.2 for o_proj: docs/gpu.md).

Each function runs the Triton kernel on CUDA and the same product through torch elsewhere.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

GEMV_MAX_PAIRS = 16
# Each row of x reads the weight once more (from L2 when the rows' blocks run together); past a few
# rows a tiled GEMM, which reads it once, is the better choice.
GEMV_MAX_ROWS = 4
FP8_BLOCK = 128  # the square tile of one fp8 scale, DeepSeek's weight_block_size
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


class SharedOperand(NamedTuple):
    """Weights of `count` shared experts read in place as extra pairs of every token: row r of
    shared pair s is weight.flatten()[s * expert_stride + r' * row_stride :][:K] with
    r' = r + gap for r >= second_half, else r."""
    weight: torch.Tensor
    count: int
    expert_stride: int
    row_stride: int
    second_half: int
    gap: int


def shared_gate_up(merged_gate_up: torch.Tensor, count: int) -> SharedOperand:
    """A shared MLP's merged [gate rows; up rows] [2 * count * I, D] as `count` experts of [2I, D]
    each (expert s: gate rows s*I.., then up rows count*I + s*I..); SwiGLU is row-wise, so their
    sum is the whole MLP."""
    hidden, dim = merged_gate_up.shape[0] // (2 * count), merged_gate_up.shape[1]
    return SharedOperand(merged_gate_up, count, hidden * dim, dim, hidden, (count - 1) * hidden)


def shared_down(down: torch.Tensor, count: int) -> SharedOperand:
    """A shared MLP's down projection [D, count * I] as `count` experts of [D, I] (columns s*I..)."""
    hidden = down.shape[1] // count
    return SharedOperand(down, count, hidden, down.shape[1], down.shape[0], 0)


if triton is not None:
    # Only configurations that came within ~20% of the best on V2-Lite's expert shapes, bf16 and fp8
    # (bench/gpu_gemv_sweep.py on an H200): the autotuner's timings are noisy at these 10-30 us, and
    # from the wider list it once kept a config 1.6x slower.
    @triton.autotune(
        configs=[triton.Config({"BLOCK_N": n, "BLOCK_K": k}, num_warps=w, num_stages=3)
                 for n, k, w in ((8, 256, 4), (16, 128, 8), (16, 256, 4), (32, 256, 8), (16, 512, 4),
                                 (32, 512, 4))],
        key=["N", "K", "k_per_split"],
    )
    @triton.jit
    def _gemv_kernel(x_ptr, w_ptr, scale_ptr, ids_ptr, shared_ptr, out_ptr, first_expert, num_local, N, K,
                     k_per_split, top_k, pairs_per_token, first_slot, num_slots, shared_expert_stride,
                     shared_row_stride, shared_second_half, shared_gap, ROUTED: tl.constexpr,
                     HAS_SHARED: tl.constexpr, GLU: tl.constexpr, FP8: tl.constexpr,
                     SCALE_BLOCK: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
        """Program (q, n, s): rows n*BLOCK_N.. of W_p times x over K split s; out [splits, P, N].
        Program q serves slot first_slot + q % num_slots of token q // num_slots, which is pair
        p = token * pairs_per_token + slot: routed expert ids[token, slot] for slot < top_k, else
        shared expert slot - top_k. x is [tokens, K], or with GLU [P, 2K] (the pairs' gate and up
        halves)."""
        split = tl.program_id(2)
        rows = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
        token, slot = tl.program_id(0) // num_slots, first_slot + tl.program_id(0) % num_slots
        pair = token * pairs_per_token + slot
        if GLU:
            x_row = x_ptr + pair.to(tl.int64) * 2 * K
        else:
            x_row = x_ptr + token.to(tl.int64) * K
        row_mask = rows[:, None] < N
        if ROUTED:
            is_routed = slot < top_k
            expert = tl.load(ids_ptr + token * top_k + tl.minimum(slot, top_k - 1)) - first_expert
            is_ours = (expert >= 0) & (expert < num_local)
            # Another rank's expert: every load below is masked off (no memory read) and the row is zero.
            expert = tl.where(is_ours, expert, 0)
            w_rows = w_ptr + expert.to(tl.int64) * N * K + rows[:, None].to(tl.int64) * K
            if HAS_SHARED:  # one pointer per row chosen before the loop: the loop has no branch
                shared_rows = rows + tl.where(rows >= shared_second_half, shared_gap, 0)
                shared = tl.maximum(slot - top_k, 0).to(tl.int64)
                w_rows = tl.where(is_routed, w_rows, shared_ptr + shared * shared_expert_stride
                                  + shared_rows[:, None].to(tl.int64) * shared_row_stride)
                row_mask = row_mask & (is_ours | ~is_routed)
            else:
                row_mask = row_mask & is_ours
        else:
            w_rows = w_ptr + rows[:, None].to(tl.int64) * K
        if FP8:  # BLOCK_N divides SCALE_BLOCK: the program's rows share one row of scale tiles
            k_tiles = tl.cdiv(K, SCALE_BLOCK)
            scale_row = (scale_ptr + (expert.to(tl.int64) * tl.cdiv(N, SCALE_BLOCK)
                                      + tl.program_id(1) * BLOCK_N // SCALE_BLOCK) * k_tiles)
        k_start = split * k_per_split
        k_stop = tl.minimum(k_start + k_per_split, K)
        acc = tl.zeros((BLOCK_N,), dtype=tl.float32)
        for k0 in range(0, k_per_split, BLOCK_K):
            cols = k_start + k0 + tl.arange(0, BLOCK_K)
            in_k = cols < k_stop
            if GLU:
                gate = tl.load(x_row + cols, mask=in_k, other=0.0).to(tl.float32)
                up = tl.load(x_row + K + cols, mask=in_k, other=0.0).to(tl.float32)
                x = gate * tl.sigmoid(gate) * up
            else:
                x = tl.load(x_row + cols, mask=in_k, other=0.0).to(tl.float32)
            if FP8:  # scale the activations, one scale per column tile: the same product, fewer multiplies
                x = x * tl.load(scale_row + cols // SCALE_BLOCK, mask=in_k, other=0.0)
            w = tl.load(w_rows + cols[None, :], mask=row_mask & in_k[None, :], other=0.0)
            acc += tl.sum(w.to(tl.float32) * x[None, :], axis=1)
        out_rows = out_ptr + (split * tl.num_programs(0) + pair).to(tl.int64) * N + rows
        tl.store(out_rows, acc.to(out_ptr.dtype.element_ty), mask=rows < N)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)  # plain Python, which torch.compile traces (it would not step into triton's own)


def _splits_for(num_pairs: int, n: int, k: int) -> int:
    """Slices of K that make about _TARGET_BLOCKS blocks, each slice _SPLIT_K_STEP or more of K."""
    wanted = _cdiv(_TARGET_BLOCKS, num_pairs * _cdiv(n, _TYPICAL_BLOCK_N))
    return max(1, min(wanted, k // _SPLIT_K_STEP))


def expert_gemv(x: torch.Tensor, weights: torch.Tensor, expert_ids: torch.Tensor, first_expert: int = 0, *,
                scales: torch.Tensor | None = None, shared: SharedOperand | None = None,
                glu: bool = False, slots: tuple[int, int] | None = None,
                out: torch.Tensor | None = None) -> torch.Tensor:
    """x [T, K], weights [E, N, K] (this rank's experts first_expert..), expert_ids [T, k] ->
    [T * (k + S), N]: per token its k routed pairs, then its S = shared.count shared ones (none
    without `shared`). A pair whose expert is another rank's is zero.
    glu: x is [T * (k + S), 2K], and each pair's input is silu(first half) * second half.
    scales: weights are float8_e4m3fn, scales [E, N / FP8_BLOCK, K / FP8_BLOCK] (rounded up) float32.
    slots (first, count): only those slots of every token, written into `out` (made if None), the
    other rows left as they are: the shared slots need no routing, so they can run before it."""
    num_tokens, top_k = expert_ids.shape
    num_local, n, k = weights.shape
    pairs_per_token = top_k + (shared.count if shared is not None else 0)
    pairs, out_dtype = num_tokens * pairs_per_token, x.dtype
    first_slot, num_slots = slots if slots is not None else (0, pairs_per_token)
    if shared is not None and scales is not None:
        raise ValueError("shared experts ride along only with unquantized routed experts (one element type)")
    if out is None:
        out = torch.empty(pairs, n, dtype=out_dtype, device=x.device)
    if triton is not None and x.is_cuda:
        grid = lambda meta: (num_tokens * num_slots, triton.cdiv(n, meta["BLOCK_N"]), 1)  # noqa: E731
        _, _, expert_stride, row_stride, second_half, gap = shared if shared is not None else (None,) + (0,) * 5
        _gemv_kernel[grid](x.contiguous(), weights, scales if scales is not None else x,
                           expert_ids.contiguous(), shared.weight if shared is not None else weights, out,
                           first_expert, num_local, n, k, k, top_k, pairs_per_token, first_slot, num_slots,
                           expert_stride, row_stride, second_half, gap, ROUTED=True,
                           HAS_SHARED=shared is not None, GLU=glu, FP8=scales is not None, SCALE_BLOCK=FP8_BLOCK)
        return out
    if glu:
        gate, up = x.view(pairs, 2, k).unbind(1)
        x = F.silu(gate.float()) * up.float()
    else:
        x = x.repeat_interleave(pairs_per_token, dim=0)
    local = expert_ids - first_expert
    is_ours = (local >= 0) & (local < num_local)
    picked = local.clamp(0, num_local - 1)
    # [T, k, N, K]: a copy, fine off the GPU hot path
    routed = (dequantize_fp8(weights[picked], scales[picked]) if scales is not None else weights[picked]).float()
    routed = routed.masked_fill(~is_ours[..., None, None], 0)
    if shared is not None:
        routed = torch.cat([routed, shared_matrices(shared, n, k).float().expand(num_tokens, -1, -1, -1)], dim=1)
    every_slot = torch.bmm(routed.flatten(0, 1), x.float()[:, :, None])[:, :, 0].view(num_tokens, pairs_per_token, n)
    out.view(num_tokens, pairs_per_token, n)[:, first_slot:first_slot + num_slots] = \
        every_slot[:, first_slot:first_slot + num_slots]
    return out


def shared_matrices(shared: SharedOperand, n: int, k: int) -> torch.Tensor:
    """[S, N, K]: the shared experts as `SharedOperand` lays them out (the kernel's addressing)."""
    rows = torch.arange(n, device=shared.weight.device)
    rows = rows + torch.where(rows >= shared.second_half, shared.gap, 0)
    starts = torch.arange(shared.count, device=rows.device)[:, None] * shared.expert_stride + rows * shared.row_stride
    return shared.weight.flatten()[starts[:, :, None] + torch.arange(k, device=rows.device)]


def quantize_fp8(weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[..., N, K] float -> (float8_e4m3fn [..., N, K], float32 scales [..., N/B, K/B] rounded up, B =
    FP8_BLOCK): each tile divided by its largest magnitude / 448 (e4m3's largest finite value)."""
    n, k = weights.shape[-2:]
    padded = F.pad(weights.float(), (0, _cdiv(k, FP8_BLOCK) * FP8_BLOCK - k, 0, _cdiv(n, FP8_BLOCK) * FP8_BLOCK - n))
    tiles = padded.unflatten(-1, (-1, FP8_BLOCK)).unflatten(-3, (-1, FP8_BLOCK))  # [..., N/B, B, K/B, B]
    scales = tiles.abs().amax(dim=(-3, -1)).clamp(min=1e-12) / torch.finfo(torch.float8_e4m3fn).max
    quantized = (tiles / scales[..., :, None, :, None]).to(torch.float8_e4m3fn)
    return quantized.flatten(-2).flatten(-3, -2)[..., :n, :k].contiguous(), scales


def dequantize_fp8(weights: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """The inverse of `quantize_fp8` (up to e4m3 rounding), in float32."""
    n, k = weights.shape[-2:]
    expanded = scales.repeat_interleave(FP8_BLOCK, dim=-2)[..., :n, :].repeat_interleave(FP8_BLOCK, dim=-1)
    return weights.float() * expanded[..., :k]


def linear_float32_partials(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x [R, K] @ weight [N, K]^T in float32 products and sums, as x.float() @ weight.float().T, left
    as partial sums [splits, R, N] for the consumer to add: the GEMV kernel, split along K, for up
    to GEMV_MAX_ROWS rows on CUDA; torch otherwise (one split)."""
    rows = x.shape[0]
    if triton is None or not x.is_cuda or rows > GEMV_MAX_ROWS:
        return F.linear(x.float(), weight.float())[None]
    n, k = weight.shape
    splits = _splits_for(rows, n, k)
    k_per_split = _cdiv(_cdiv(k, splits), _SPLIT_K_STEP) * _SPLIT_K_STEP
    splits = _cdiv(k, k_per_split)
    out = torch.empty(splits, rows, n, dtype=torch.float32, device=x.device)
    grid = lambda meta: (rows, triton.cdiv(n, meta["BLOCK_N"]), splits)  # noqa: E731
    _gemv_kernel[grid](x.contiguous(), weight, x, x, x, out, 0, 1, n, k, k_per_split, 1, 1, 0, 1, 0, 0, 0, 0,
                       ROUTED=False, HAS_SHARED=False, GLU=False, FP8=False, SCALE_BLOCK=FP8_BLOCK)
    return out
