"""Absorbed MLA attention of one decode token per row over its slot's latent cache, in two kernels.

torch spends six kernels per layer on it (gathers of the slot's latent and rope-key caches, the
two score products, the masked softmax, the product with the latents: cuBLAS batched GEMVs of a
few hundred KB each, launch-bound at batch 1). Here two: one program per (row, head, block of
_BLOCK_L cache positions) reads its part of the slot's cache in place and leaves a partial
softmax sum, then one per (row, head) combines the blocks (flash decoding), giving
  out[b, h] = sum_l softmax_l(scale * (q_latent[b, h] . c_kv[l] + q_pe[b, h] . k_pe[l])) c_kv[l]
over cache positions l < num_keys with l <= positions[b] (the causal mask of a decode row), and
the combining kernel also applies the head's value projection W_uv (one more GEMV launch saved per
layer). Products and the softmax run in float32. `model/layers/mla.py` keeps the torch path as its
twin and for everything else (prefill, more than MAX_QUERIES (row, head) pairs, CPUs).

Eager decode passes num_keys = position + 1, a captured graph a fixed cache length: neither the
kernels' code (num_keys and the block count are not specialised on) nor the order of the float32
sums (blocks are combined in fixed chunks; blocks past a row's position add exact zeros) depends on
it, so both give the same bits.
"""

from __future__ import annotations

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU installs run the torch path
    triton = None

_BLOCK_L = 32  # cache positions per program: a 32 x 512 bf16 tile of latents, 32 KB
_COMBINE_CHUNK = 8  # blocks combined per step, a fixed order whatever the block count
_BLOCK_V = 16  # output values per combining program: d_v / 16 programs per (row, head) spread W_uv's reads
# Each (row, head) query re-reads its row's cache blocks (from L2 after the first head) and holds a
# 32 x 512 float32 tile per program. Past about 64 queries per step the programs run in several
# waves and torch's batched GEMMs, which read a row's cache once for all its heads, win. Measured
# on an H200 at batch 1 (docs/gpu.md): V2-Lite's 16 heads 6.4 + 1.5 us per layer against about 12
# for torch's kernels (5.9 + 3.4 now, the second applying W_uv too); V3's 128 heads 30 us, about
# 25 more than torch's.
MAX_QUERIES = 64

if triton is not None:
    @triton.jit(do_not_specialize=["num_keys"])
    def _block_attention_kernel(q_latent_ptr, q_pe_ptr, latent_ptr, rope_key_ptr, slots_ptr, positions_ptr,
                                acc_ptr, max_ptr, sum_ptr, num_heads, num_keys, max_len, scale,
                                RANK: tl.constexpr, D_ROPE: tl.constexpr, BLOCK_L: tl.constexpr):
        """Program (row, head, block): over cache positions block*BLOCK_L.., the block's score max m,
        sum of exp(score - m) and sum of exp(score - m) * c_kv (all float32)."""
        row, head, block = tl.program_id(0), tl.program_id(1), tl.program_id(2)
        query = row * num_heads + head
        rank, rope = tl.arange(0, RANK), tl.arange(0, D_ROPE)
        q_latent = tl.load(q_latent_ptr + query * RANK + rank).to(tl.float32)
        q_pe = tl.load(q_pe_ptr + query * D_ROPE + rope).to(tl.float32)
        slot = tl.load(slots_ptr + row).to(tl.int64)
        keys = block * BLOCK_L + tl.arange(0, BLOCK_L)
        # Keys past the row's position are not read at all (a graph's fixed num_keys covers many).
        visible = (keys < num_keys) & (keys <= tl.load(positions_ptr + row))
        c_kv = tl.load(latent_ptr + (slot * max_len + keys[:, None]) * RANK + rank[None, :],
                       mask=visible[:, None], other=0.0).to(tl.float32)
        k_pe = tl.load(rope_key_ptr + (slot * max_len + keys[:, None]) * D_ROPE + rope[None, :],
                       mask=visible[:, None], other=0.0).to(tl.float32)
        scores = tl.sum(c_kv * q_latent[None, :], axis=1) + tl.sum(k_pe * q_pe[None, :], axis=1)
        # float32 whatever type the caller's scale arrived as (torch.compile passes Python floats as float64)
        scores = tl.where(visible, (scores * scale).to(tl.float32), float("-inf"))
        block_max = tl.max(scores, axis=0)
        # A block past the row's position has no visible key: its max is -inf and it adds nothing.
        probs = tl.exp(scores - tl.where(block_max == float("-inf"), 0.0, block_max))
        out = (row * num_heads + head) * tl.num_programs(2) + block
        tl.store(acc_ptr + out * RANK + rank, tl.sum(probs[:, None] * c_kv, axis=0))
        tl.store(max_ptr + out, block_max)
        tl.store(sum_ptr + out, tl.sum(probs, axis=0))

    @triton.jit(do_not_specialize=["num_blocks"])
    def _combine_kernel(acc_ptr, max_ptr, sum_ptr, w_uv_ptr, out_ptr, num_heads, num_blocks, w_head_stride,
                        w_row_stride, RANK: tl.constexpr, D_V: tl.constexpr, BLOCK_V: tl.constexpr,
                        CHUNK: tl.constexpr):
        """Program (row * head, v): the blocks' partial softmax sums rescaled to the overall max,
        then output values v*BLOCK_V.. of W_uv times the attended latent."""
        query, v_block = tl.program_id(0), tl.program_id(1)
        rank, chunk = tl.arange(0, RANK), tl.arange(0, CHUNK)
        overall_max = tl.max(tl.full((CHUNK,), float("-inf"), tl.float32), axis=0)
        for first in range(0, num_blocks, CHUNK):
            blocks = first + chunk
            block_max = tl.load(max_ptr + query * num_blocks + blocks, mask=blocks < num_blocks, other=float("-inf"))
            overall_max = tl.maximum(overall_max, tl.max(block_max, axis=0))
        # Block 0 holds position 0, visible to every row: the overall max is finite.
        total = tl.sum(tl.zeros((CHUNK,), tl.float32), axis=0)
        latent = tl.zeros((RANK,), tl.float32)
        for first in range(0, num_blocks, CHUNK):
            blocks = first + chunk
            is_block = blocks < num_blocks
            block_max = tl.load(max_ptr + query * num_blocks + blocks, mask=is_block, other=float("-inf"))
            weight = tl.exp(block_max - overall_max)
            total += tl.sum(weight * tl.load(sum_ptr + query * num_blocks + blocks, mask=is_block, other=0.0),
                            axis=0)
            acc = tl.load(acc_ptr + (query * num_blocks + blocks[:, None]) * RANK + rank[None, :],
                          mask=is_block[:, None], other=0.0)
            latent += tl.sum(weight[:, None] * acc, axis=0)
        latent = latent / total
        values = v_block * BLOCK_V + tl.arange(0, BLOCK_V)
        w_uv = tl.load(w_uv_ptr + (query % num_heads) * w_head_stride + values[:, None] * w_row_stride
                       + rank[None, :]).to(tl.float32)
        out = tl.sum(w_uv * latent[None, :], axis=1)
        tl.store(out_ptr + query * D_V + values, out.to(out_ptr.dtype.element_ty))


def _is_power_of_2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def fits(x: torch.Tensor, num_heads: int, rank: int, rope_dim: int, v_dim: int) -> bool:
    """Whether the kernel serves the decode rows x [B, 1, ...]: on CUDA, at most MAX_QUERIES
    (row, head) pairs, power-of-2 latent and rope sizes, value heads a multiple of _BLOCK_V."""
    return (triton is not None and x.is_cuda and x.shape[0] * num_heads <= MAX_QUERIES
            and _is_power_of_2(rank) and _is_power_of_2(rope_dim) and v_dim % _BLOCK_V == 0)


def latent_attention(q_latent: torch.Tensor, q_pe: torch.Tensor, latent_cache: torch.Tensor,
                     rope_key_cache: torch.Tensor, slots: torch.Tensor, positions: torch.Tensor, num_keys: int,
                     scale: float, w_uv: torch.Tensor) -> torch.Tensor:
    """q_latent [B, H, 1, r], q_pe [B, 1, H, d_rope], caches [slots, max_len, r / d_rope], slots [B],
    positions [B, 1], w_uv [H, d_v, r] (rows of r contiguous) -> values [B, 1, H, d_v] in the
    caches' dtype (see the module doc)."""
    batch, heads, _, rank = q_latent.shape
    v_dim = w_uv.shape[1]
    num_blocks = -(-num_keys // _BLOCK_L)
    device = q_latent.device
    acc = torch.empty(batch, heads, num_blocks, rank, dtype=torch.float32, device=device)
    block_max = torch.empty(batch, heads, num_blocks, dtype=torch.float32, device=device)
    block_sum = torch.empty_like(block_max)
    _block_attention_kernel[(batch, heads, num_blocks)](
        q_latent.contiguous(), q_pe.contiguous(), latent_cache, rope_key_cache, slots.contiguous(),
        positions.contiguous(), acc, block_max, block_sum, heads, num_keys, latent_cache.shape[1], scale,
        RANK=rank, D_ROPE=rope_key_cache.shape[-1], BLOCK_L=_BLOCK_L, num_warps=4)
    out = torch.empty(batch, 1, heads, v_dim, dtype=latent_cache.dtype, device=device)
    _combine_kernel[(batch * heads, v_dim // _BLOCK_V)](
        acc, block_max, block_sum, w_uv, out, heads, num_blocks, w_uv.stride(0), w_uv.stride(1), RANK=rank,
        D_V=v_dim, BLOCK_V=_BLOCK_V, CHUNK=_COMBINE_CHUNK, num_warps=4)
    return out
