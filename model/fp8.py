"""FP8 block-scaled checkpoints as DeepSeek publishes V3/R1: dequantized to float as they are read.

Each quantized linear weight W [out, in] is stored as float8_e4m3fn next to `<name>_scale_inv`
[ceil(out / block), ceil(in / block)] float32, one multiplier per block x block tile (the last
tiles may be partial): W = W_fp8 * scale_inv of its tile. The config says so in
`quantization_config` ({"quant_method": "fp8", "weight_block_size": [128, 128], ...}).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch

_SCALE_SUFFIX = "_scale_inv"  # "x.weight" -> "x.weight_scale_inv"


class FP8CheckpointError(ValueError):
    pass


def fp8_block_size(hf_config: dict[str, Any]) -> int | None:
    """The square block size of an FP8 block-scaled checkpoint, or None when its config says it is not one."""
    quant = hf_config.get("quantization_config") or {}
    if quant.get("quant_method") != "fp8":
        return None
    block_rows, block_cols = quant.get("weight_block_size", (128, 128))
    if block_rows != block_cols:
        raise FP8CheckpointError(f"only square FP8 blocks are supported, got {block_rows}x{block_cols}")
    return int(block_rows)


def dequant_fp8_blocks(weight_fp8: torch.Tensor, scale_inv: torch.Tensor, block: int = 128) -> torch.Tensor:
    """float8 [out, in] with scale_inv [ceil(out / block), ceil(in / block)] -> float32 [out, in]."""
    rows, cols = weight_fp8.shape
    expected = (-(-rows // block), -(-cols // block))
    if tuple(scale_inv.shape) != expected:
        raise FP8CheckpointError(f"scale_inv shape {tuple(scale_inv.shape)} does not tile a {rows}x{cols} "
                                 f"weight in {block}x{block} blocks (expected {expected})")
    scale = scale_inv.float().repeat_interleave(block, dim=0)[:rows].repeat_interleave(block, dim=1)[:, :cols]
    return weight_fp8.float() * scale


def dequantize_fp8_checkpoint(weights: Iterable[tuple[str, torch.Tensor]],
                              block: int = 128) -> Iterator[tuple[str, torch.Tensor]]:
    """Passes float tensors through; yields each float8 weight dequantized once its scale has been seen.

    A weight and its scale may come in either order (or from different shards), so whichever
    arrives first waits; a float8 weight without a scale (or the reverse) is an error at the end.
    """
    waiting_weights: dict[str, torch.Tensor] = {}
    waiting_scales: dict[str, torch.Tensor] = {}
    for name, tensor in weights:
        if name.endswith(_SCALE_SUFFIX):
            weight_name = name[:-len(_SCALE_SUFFIX)]
            if weight_name in waiting_weights:
                yield weight_name, dequant_fp8_blocks(waiting_weights.pop(weight_name), tensor, block)
            else:
                waiting_scales[weight_name] = tensor
        elif tensor.dtype == torch.float8_e4m3fn:
            if name in waiting_scales:
                yield name, dequant_fp8_blocks(tensor, waiting_scales.pop(name), block)
            else:
                waiting_weights[name] = tensor
        else:
            yield name, tensor
    if waiting_weights or waiting_scales:
        raise FP8CheckpointError(f"float8 weights without scales: {sorted(waiting_weights)[:5]}; "
                                 f"scales without float8 weights: {sorted(waiting_scales)[:5]}")
