"""Our own CPU loops, in C, built by `pip install`: one-pass int4/int8 -> bf16 expansion for prefill
(expand.c), and the int4 matrix-vector product for decode (gemv.c).

`SUPPORTED` is False where the CPU lacks AVX-512 with BF16 conversions, or where the extension was not
built; callers then use torch ops.
The functions take contiguous CPU tensors and write into a bf16 tensor the caller passes (reused
across the slices of one GEMM, so its pages are faulted in once).
"""

from __future__ import annotations

import logging

import torch

try:
    from model.native import _expand, _gemv
except ImportError:  # a source tree used without `pip install` (the extensions are built there)
    _expand = _gemv = None
    logging.getLogger(__name__).warning(
        "model/native is not built (run `pip install -e .`): int4/int8 prefill expands weights with "
        "torch ops, about 2x slower, and int4 decode runs torch's kernel")

SUPPORTED: bool = _expand is not None and _expand.supported()
GEMV_MAX_ROWS = 4
_ROW_BLOCK = 64


def expand_int4(blocks: torch.Tensor, scales_and_zeros: torch.Tensor, first: int, group_size: int,
                out: torch.Tensor) -> torch.Tensor:
    """blocks: uint8 [num_blocks, in, 32], output channels first .. first + 64 * num_blocks in torch's
    CPU int4 layout; scales_and_zeros: bf16 [in / group_size, all outputs, 2] (the whole layer's).
    Writes (q - 8) * scale + zero as bf16 [in, num_blocks * 64] into `out` and returns it."""
    num_blocks, in_features, _ = blocks.shape
    _check(blocks, torch.uint8, (num_blocks, in_features, 32))
    groups, out_total, _ = scales_and_zeros.shape
    _check(scales_and_zeros, torch.bfloat16, (in_features // group_size, out_total, 2), "scales_and_zeros")
    _check(out, torch.bfloat16, (in_features, num_blocks * 64), "out")
    _expand.expand_int4(blocks.data_ptr(), scales_and_zeros.data_ptr(), out.data_ptr(),
                        in_features, num_blocks, group_size, out_total, first)
    return out


def expand_int8(q: torch.Tensor, scales: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """q: int8 [rows, in] (in a multiple of 64), scales: float32 [rows]. Writes bf16 q * scale
    [rows, in] into `out` and returns it."""
    rows, in_features = q.shape
    _check(q, torch.int8, (rows, in_features))
    _check(scales, torch.float32, (rows,), "scales")
    _check(out, torch.bfloat16, (rows, in_features), "out")
    _expand.expand_int8(q.data_ptr(), scales.data_ptr(), out.data_ptr(), rows, in_features)
    return out


def gemv_int4(x: torch.Tensor, packed: torch.Tensor, scales_and_zeros: torch.Tensor, group_size: int,
              out: torch.Tensor, blocks: range) -> torch.Tensor:
    """x: float32 [rows <= 4, in]; packed: uint8 [out, in / 2] in torch's CPU int4 layout;
    scales_and_zeros: bf16 [in / group_size, out, 2]. Writes x @ W^T for the output channels of the
    64-channel `blocks` into float32 `out` [rows, out] (other columns untouched) on this thread, and
    returns it."""
    rows, in_features = x.shape
    out_features = packed.shape[0]
    _check(x, torch.float32, (rows, in_features), "x")
    _check(packed, torch.uint8, (out_features, in_features // 2))
    _check(scales_and_zeros, torch.bfloat16, (in_features // group_size, out_features, 2), "scales_and_zeros")
    _check(out, torch.float32, (rows, out_features), "out")
    if blocks.step != 1 or blocks.start < 0 or blocks.stop * _ROW_BLOCK > out_features:
        raise ValueError(f"blocks {blocks} out of range for {out_features} output channels")
    _gemv.gemv_int4(packed.data_ptr(), scales_and_zeros.data_ptr(), x.data_ptr(), out.data_ptr(), rows,
                    in_features, group_size, out_features, blocks.start, len(blocks))
    return out


def _check(t: torch.Tensor, dtype: torch.dtype, shape: tuple[int, ...], name: str = "weight") -> None:
    # The C loops trust these: a wrong shape or a strided view would read out of bounds.
    if t.dtype != dtype or tuple(t.shape) != shape or not t.is_contiguous() or t.device.type != "cpu":
        raise ValueError(f"{name}: need a contiguous CPU {dtype} tensor of shape {shape}, "
                         f"got {t.dtype} {tuple(t.shape)} on {t.device}")
