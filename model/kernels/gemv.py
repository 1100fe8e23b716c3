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
           The gate/up GEMV writes silu(gate) * up itself (`glu_out`: a program reads a gate row
           block and the matching up rows), so nothing runs between the two GEMVs and the down
           GEMV reads plain activations; on small matrices the down GEMV also adds each token's
           pairs up with the router's weights and the residual (`sum_pairs`), so no weighted-sum or
           residual-add kernel follows it. Routed experts may be stored as
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
# (BLOCK_N, BLOCK_K, warps) the autotuners pick from: the configurations that came out best over
# V2-Lite's expert calls in bench/gpu_gemv_sweep.py on an H200 (bench/results/gpu_gemv_sweep.txt); its
# timings are noisy at these 7-30 us, and from a wider list it once kept a config 1.6x slower. With
# GLU_OUT a program reads BLOCK_N gate rows and BLOCK_N up rows.
_CONFIGS = ((4, 256, 4), (8, 128, 8), (4, 512, 4), (8, 256, 8), (16, 128, 8), (16, 512, 8), (16, 512, 4))
_MAX_BLOCK_N = max(n for n, _, _ in _CONFIGS)
# The same for the GEMV that adds the pairs up (`_gemv_sum_kernel`), whose tiles are [pairs, BLOCK_N, BLOCK_K].
_SUM_CONFIGS = ((1, 128, 4), (4, 128, 8), (2, 256, 8), (8, 128, 8))
_SUMMED_MAX_ELEMENTS = 4 << 20  # see _sums_in_kernel

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
    @triton.jit
    def _weight_rows(w_ptr, ids_ptr, shared_ptr, token, slot, rows, first_expert, num_local, N, K, top_k,
                     shared_expert_stride, shared_row_stride, shared_second_half, shared_gap,
                     ROUTED: tl.constexpr, HAS_SHARED: tl.constexpr):
        """(pointers to rows `rows` of pair (token, slot)'s matrix, their mask, the pair's local expert):
        routed expert ids[token, slot] for slot < top_k, else shared expert slot - top_k. `slot` and
        `rows` broadcast (a slot and rows [BLOCK_N, 1], or slots [P, 1, 1] and rows [1, BLOCK_N, 1])."""
        row_mask = rows < N
        expert = 0
        if ROUTED:
            is_routed = slot < top_k
            expert = tl.load(ids_ptr + token * top_k + tl.minimum(slot, top_k - 1)) - first_expert
            is_ours = (expert >= 0) & (expert < num_local)
            # Another rank's expert: every load of its rows is masked off (no memory read), the rows are zero.
            expert = tl.where(is_ours, expert, 0)
            w_rows = w_ptr + expert.to(tl.int64) * N * K + rows.to(tl.int64) * K
            if HAS_SHARED:  # one pointer per row chosen before the loop: the loop has no branch
                shared_rows = rows + tl.where(rows >= shared_second_half, shared_gap, 0)
                shared = tl.maximum(slot - top_k, 0).to(tl.int64)
                w_rows = tl.where(is_routed, w_rows, shared_ptr + shared * shared_expert_stride
                                  + shared_rows.to(tl.int64) * shared_row_stride)
                row_mask = row_mask & (is_ours | ~is_routed)
            else:
                row_mask = row_mask & is_ours
        else:
            w_rows = w_ptr + rows.to(tl.int64) * K
        return w_rows, row_mask, expert

    @triton.jit
    def _scale_row(scale_ptr, expert, first_row, N, K, SCALE_BLOCK: tl.constexpr):
        """The fp8 scales of a block of rows from first_row on, all in one row of tiles (BLOCK_N divides
        SCALE_BLOCK and the block starts on a multiple of BLOCK_N)."""
        return scale_ptr + (expert.to(tl.int64) * tl.cdiv(N, SCALE_BLOCK) + first_row // SCALE_BLOCK) * tl.cdiv(
            K, SCALE_BLOCK)

    @triton.jit
    def _input(x_rows, cols, in_k, scale_row, FP8: tl.constexpr, SCALE_BLOCK: tl.constexpr):
        """x at `cols` in float32; with FP8 times the weight tiles' scales, one per column tile (the
        same product as scaling the weights, fewer multiplies)."""
        x = tl.load(x_rows + cols, mask=in_k, other=0.0).to(tl.float32)
        if FP8:
            x = x * tl.load(scale_row + cols // SCALE_BLOCK, mask=in_k, other=0.0)
        return x

    @triton.autotune(
        configs=[triton.Config({"BLOCK_N": n, "BLOCK_K": k}, num_warps=w, num_stages=3) for n, k, w in _CONFIGS],
        key=["N", "K", "k_per_split", "GLU_OUT"],
    )
    @triton.jit
    def _gemv_kernel(x_ptr, w_ptr, scale_ptr, ids_ptr, shared_ptr, out_ptr, first_expert, num_local, N, K,
                     k_per_split, top_k, pairs_per_token, first_slot, num_slots, shared_expert_stride,
                     shared_row_stride, shared_second_half, shared_gap, ROUTED: tl.constexpr,
                     HAS_SHARED: tl.constexpr, PAIR_INPUT: tl.constexpr, GLU_OUT: tl.constexpr,
                     FP8: tl.constexpr, SCALE_BLOCK: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
        """Program (q, n, s): rows n*BLOCK_N.. of W_p times x over K split s; out [splits, P, N].
        Program q serves slot first_slot + q % num_slots of token q // num_slots, which is pair
        p = token * pairs_per_token + slot (`_weight_rows`). x is [tokens, K], or with PAIR_INPUT
        [P, K]. GLU_OUT: the program also takes rows N/2 + n*BLOCK_N.. and writes
        silu(first rows) * (second rows), out [P, N/2] (a SwiGLU's gate and up halves)."""
        split = tl.program_id(2)
        token, slot = tl.program_id(0) // num_slots, first_slot + tl.program_id(0) % num_slots
        pair = token * pairs_per_token + slot
        x_row = x_ptr + (pair if PAIR_INPUT else token).to(tl.int64) * K
        width = N // 2 if GLU_OUT else N
        first_row = tl.program_id(1) * BLOCK_N
        rows = first_row + tl.arange(0, BLOCK_N)
        w_rows, row_mask, expert = _weight_rows(w_ptr, ids_ptr, shared_ptr, token, slot, rows[:, None], first_expert,
                                                num_local, N, K, top_k, shared_expert_stride, shared_row_stride,
                                                shared_second_half, shared_gap, ROUTED, HAS_SHARED)
        up_rows, up_mask, _ = _weight_rows(w_ptr, ids_ptr, shared_ptr, token, slot, rows[:, None] + width,
                                           first_expert, num_local, N, K, top_k, shared_expert_stride,
                                           shared_row_stride, shared_second_half, shared_gap, ROUTED, HAS_SHARED)
        scale_row = _scale_row(scale_ptr, expert, first_row, N, K, SCALE_BLOCK) if FP8 else scale_ptr
        up_scale_row = _scale_row(scale_ptr, expert, first_row + width, N, K, SCALE_BLOCK) if FP8 else scale_ptr
        k_start = split * k_per_split
        k_stop = tl.minimum(k_start + k_per_split, K)
        acc = tl.zeros((BLOCK_N,), dtype=tl.float32)
        up_acc = tl.zeros((BLOCK_N,), dtype=tl.float32)
        for k0 in range(0, k_per_split, BLOCK_K):
            cols = k_start + k0 + tl.arange(0, BLOCK_K)
            in_k = cols < k_stop
            x = _input(x_row, cols, in_k, scale_row, FP8, SCALE_BLOCK)
            w = tl.load(w_rows + cols[None, :], mask=row_mask & in_k[None, :], other=0.0)
            acc += tl.sum(w.to(tl.float32) * x[None, :], axis=1)
            if GLU_OUT:
                x_up = _input(x_row, cols, in_k, up_scale_row, FP8, SCALE_BLOCK) if FP8 else x
                w_up = tl.load(up_rows + cols[None, :], mask=up_mask & in_k[None, :], other=0.0)
                up_acc += tl.sum(w_up.to(tl.float32) * x_up[None, :], axis=1)
        if GLU_OUT:
            acc = acc * tl.sigmoid(acc) * up_acc
        out_rows = out_ptr + (split * tl.num_programs(0) + pair).to(tl.int64) * width + rows
        tl.store(out_rows, acc.to(out_ptr.dtype.element_ty), mask=rows < width)

    @triton.autotune(
        configs=[triton.Config({"BLOCK_N": n, "BLOCK_K": k}, num_warps=w, num_stages=3) for n, k, w in _SUM_CONFIGS],
        key=["N", "K", "PAIRS"],
    )
    @triton.jit
    def _gemv_sum_kernel(x_ptr, w_ptr, ids_ptr, shared_ptr, route_weights_ptr, residual_ptr, out_ptr,
                         first_expert, num_local, N, K, top_k, pairs_per_token, shared_expert_stride,
                         shared_row_stride, shared_second_half, shared_gap, HAS_SHARED: tl.constexpr,
                         HAS_RESIDUAL: tl.constexpr, PAIRS: tl.constexpr, BLOCK_N: tl.constexpr,
                         BLOCK_K: tl.constexpr):
        """Program (token, n): rows n*BLOCK_N.. of all the token's pairs (slots 0..PAIRS-1, those past
        pairs_per_token masked off) times their inputs (x [P, K]), added up weighted by
        route_weights [tokens, top_k] (shared pairs by 1), plus residual[token]: out [tokens, N]. A
        pair's rows are summed where they are computed, so no partial result goes through memory."""
        token = tl.program_id(0)
        slots = tl.arange(0, PAIRS)[:, None, None]
        rows = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
        is_pair = slots < pairs_per_token
        w_rows, row_mask, _ = _weight_rows(w_ptr, ids_ptr, shared_ptr, token, slots, rows[None, :, None],
                                           first_expert, num_local, N, K, top_k, shared_expert_stride,
                                           shared_row_stride, shared_second_half, shared_gap, True, HAS_SHARED)
        row_mask = row_mask & is_pair
        x_rows = x_ptr + (token * pairs_per_token + slots).to(tl.int64) * K
        acc = tl.zeros((PAIRS, BLOCK_N), dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
            cols = k0 + tl.arange(0, BLOCK_K)[None, None, :]
            in_k = cols < K
            x = tl.load(x_rows + cols, mask=in_k & is_pair, other=0.0).to(tl.float32)
            w = tl.load(w_rows + cols, mask=row_mask & in_k, other=0.0)
            acc += tl.sum(w.to(tl.float32) * x, axis=2)
        pair_slots = tl.arange(0, PAIRS)[:, None]
        route = tl.load(route_weights_ptr + token * top_k + tl.minimum(pair_slots, top_k - 1))
        weight = tl.where(pair_slots < top_k, route, tl.where(pair_slots < pairs_per_token, 1.0, 0.0))
        total = tl.sum(acc * weight, axis=0)
        if HAS_RESIDUAL:
            total += tl.load(residual_ptr + token.to(tl.int64) * N + rows, mask=rows < N, other=0.0).to(tl.float32)
        tl.store(out_ptr + token.to(tl.int64) * N + rows, total.to(out_ptr.dtype.element_ty), mask=rows < N)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)  # plain Python, which torch.compile traces (it would not step into triton's own)


def _splits_for(num_pairs: int, n: int, k: int) -> int:
    """Slices of K that make about _TARGET_BLOCKS blocks, each slice _SPLIT_K_STEP or more of K."""
    wanted = _cdiv(_TARGET_BLOCKS, num_pairs * _cdiv(n, _TYPICAL_BLOCK_N))
    return max(1, min(wanted, k // _SPLIT_K_STEP))


class PairSum(NamedTuple):
    """How `expert_gemv` adds a token's pairs up: residual[t] + sum over t's pairs of
    weights[t, slot] * pair (shared slots weigh 1); no residual if None."""
    weights: torch.Tensor
    residual: torch.Tensor | None


def expert_gemv(x: torch.Tensor, weights: torch.Tensor, expert_ids: torch.Tensor, first_expert: int = 0, *,
                scales: torch.Tensor | None = None, shared: SharedOperand | None = None,
                pair_input: bool = False, glu_out: bool = False, slots: tuple[int, int] | None = None,
                out: torch.Tensor | None = None, sum_pairs: PairSum | None = None) -> torch.Tensor:
    """x [T, K], weights [E, N, K] (this rank's experts first_expert..), expert_ids [T, k] ->
    [T * (k + S), N]: per token its k routed pairs, then its S = shared.count shared ones (none
    without `shared`). A pair whose expert is another rank's is zero.
    pair_input: x is [T * (k + S), K], each pair's own input.
    glu_out: [T * (k + S), N / 2], each pair's silu(first N / 2 rows) * (last N / 2 rows): a SwiGLU's
    gate/up, so that nothing runs between it and the down projection.
    scales: weights are float8_e4m3fn, scales [E, N / FP8_BLOCK, K / FP8_BLOCK] (rounded up) float32.
    slots (first, count): only those slots of every token, written into `out` (made if None), the
    other rows left as they are: the shared slots need no routing, so they can run before it.
    sum_pairs: instead [T, N], each token's pairs added up (`PairSum`) in float32; on CUDA by the
    same kernel where that pays (`_sums_in_kernel`), else by torch after it (fused by torch.compile)."""
    num_tokens, top_k = expert_ids.shape
    num_local, n, k = weights.shape
    pairs_per_token = top_k + (shared.count if shared is not None else 0)
    first_slot, num_slots = slots if slots is not None else (0, pairs_per_token)
    width = n // 2 if glu_out else n
    if shared is not None and scales is not None:
        raise ValueError("shared experts ride along only with unquantized routed experts (one element type)")
    if sum_pairs is not None and (slots is not None or out is not None or glu_out):
        raise ValueError("a sum of pairs is of every slot's whole output, in an output of its own")
    if triton is not None and x.is_cuda:
        if sum_pairs is not None and pair_input and _sums_in_kernel(weights, scales):
            return _summed_gemv(x, weights, expert_ids, first_expert, shared, sum_pairs)
        if glu_out and scales is not None and (n // 2) % _MAX_BLOCK_N:
            raise ValueError(f"fp8 gate/up halves of {n // 2} rows: a block of rows would straddle scale tiles")
        pairs = out if out is not None else torch.empty(num_tokens * pairs_per_token, width, dtype=x.dtype,
                                                        device=x.device)
        grid = lambda meta: (num_tokens * num_slots, triton.cdiv(width, meta["BLOCK_N"]), 1)  # noqa: E731
        _gemv_kernel[grid](x.contiguous(), weights, scales if scales is not None else x, expert_ids.contiguous(),
                           shared.weight if shared is not None else weights, pairs, first_expert, num_local, n, k, k,
                           top_k, pairs_per_token, first_slot, num_slots, *_shared_strides(shared), ROUTED=True,
                           HAS_SHARED=shared is not None, PAIR_INPUT=pair_input, GLU_OUT=glu_out,
                           FP8=scales is not None, SCALE_BLOCK=FP8_BLOCK)
        if sum_pairs is None:
            return pairs
        return _pair_sum(pairs.view(num_tokens, pairs_per_token, n).float(), sum_pairs).to(x.dtype)
    every_slot = _every_slot_product(x, weights, expert_ids, first_expert, scales, shared, pair_input)
    if glu_out:
        every_slot = F.silu(every_slot[..., :width]) * every_slot[..., width:]
    if sum_pairs is not None:
        return _pair_sum(every_slot, sum_pairs).to(x.dtype)
    if out is None:
        out = torch.empty(num_tokens * pairs_per_token, width, dtype=x.dtype, device=x.device)
    out.view(num_tokens, pairs_per_token, width)[:, first_slot:first_slot + num_slots] = \
        every_slot[:, first_slot:first_slot + num_slots]
    return out


def _sums_in_kernel(weights: torch.Tensor, scales: torch.Tensor | None) -> bool:
    """Whether the pairs are added up inside the GEMV (`_gemv_sum_kernel`): for bf16 matrices of up to
    _SUMMED_MAX_ELEMENTS. Its tiles span all of a token's pairs (padded to a power of two), so it
    reads more slowly than the pairs kernel; that pays for the weighted-sum kernel it saves only when
    the matrices are small (V2-Lite's down, not V3's, nor fp8: docs/gpu.md)."""
    return scales is None and weights.shape[1] * weights.shape[2] <= _SUMMED_MAX_ELEMENTS


def _summed_gemv(x: torch.Tensor, weights: torch.Tensor, expert_ids: torch.Tensor, first_expert: int,
                 shared: SharedOperand | None, sum_pairs: PairSum) -> torch.Tensor:
    """`expert_gemv`'s sum of pairs in one kernel: a program per (token, row block) over all its pairs."""
    num_tokens, top_k = expert_ids.shape
    num_local, n, k = weights.shape
    pairs_per_token = top_k + (shared.count if shared is not None else 0)
    out = x.new_empty(num_tokens, n)
    residual = sum_pairs.residual
    grid = lambda meta: (num_tokens, triton.cdiv(n, meta["BLOCK_N"]))  # noqa: E731
    _gemv_sum_kernel[grid](x.contiguous(), weights, expert_ids.contiguous(),
                           shared.weight if shared is not None else weights, sum_pairs.weights.contiguous(),
                           residual.contiguous() if residual is not None else x, out, first_expert, num_local, n, k,
                           top_k, pairs_per_token, *_shared_strides(shared), HAS_SHARED=shared is not None,
                           HAS_RESIDUAL=residual is not None, PAIRS=_next_power_of_2(pairs_per_token))
    return out


def _shared_strides(shared: SharedOperand | None) -> tuple[int, int, int, int]:
    return tuple(shared[2:]) if shared is not None else (0, 0, 0, 0)


def _next_power_of_2(n: int) -> int:
    return 1 << (n - 1).bit_length()  # plain Python, which torch.compile traces


def _every_slot_product(x: torch.Tensor, weights: torch.Tensor, expert_ids: torch.Tensor, first_expert: int,
                        scales: torch.Tensor | None, shared: SharedOperand | None, pair_input: bool) -> torch.Tensor:
    """The kernel's product for every slot through torch, float32 [T, k + S, N]."""
    num_tokens, top_k = expert_ids.shape
    num_local, n, k = weights.shape
    pairs_per_token = top_k + (shared.count if shared is not None else 0)
    if not pair_input:
        x = x.repeat_interleave(pairs_per_token, dim=0)
    local = expert_ids - first_expert
    is_ours = (local >= 0) & (local < num_local)
    picked = local.clamp(0, num_local - 1)
    # [T, k, N, K]: a copy, fine off the GPU hot path
    routed = (dequantize_fp8(weights[picked], scales[picked]) if scales is not None else weights[picked]).float()
    routed = routed.masked_fill(~is_ours[..., None, None], 0)
    if shared is not None:
        routed = torch.cat([routed, shared_matrices(shared, n, k).float().expand(num_tokens, -1, -1, -1)], dim=1)
    return torch.bmm(routed.flatten(0, 1), x.float()[:, :, None])[:, :, 0].view(num_tokens, pairs_per_token, n)


def _pair_sum(every_slot: torch.Tensor, sum_pairs: PairSum) -> torch.Tensor:
    """`PairSum` of every_slot [T, k + S, N] float32, in float32 [T, N]."""
    route_weights = sum_pairs.weights.float()
    num_tokens, top_k = route_weights.shape
    shared_weights = route_weights.new_ones(num_tokens, every_slot.shape[1] - top_k)
    total = (every_slot * torch.cat([route_weights, shared_weights], dim=1)[..., None]).sum(dim=1)
    return total if sum_pairs.residual is None else total + sum_pairs.residual.float()


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
                       ROUTED=False, HAS_SHARED=False, PAIR_INPUT=False, GLU_OUT=False, FP8=False,
                       SCALE_BLOCK=FP8_BLOCK)
    return out
