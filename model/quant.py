"""Weight-only quantization: int8 per output channel and int4 group-wise (asymmetric).

`quantize_int8` / `quantize_int4` are pure tensor functions; `swap_linear` replaces a model's float
`Linear` modules by the quantized modules of `model.layers.linear` (which quantize what they are
loaded with); `save_quantized` writes a folder whose metadata names the scheme.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

SCHEMES = ("int8", "int4")
INT4_GROUP_SIZES = (32, 64, 128, 256)  # what torch's CPU int4 kernel accepts
QUANT_FILE = "quantization.json"


@dataclass(frozen=True)
class QuantConfig:
    scheme: str  # "int8" | "int4"
    group_size: int = 32  # int4 only; 32 matches GGUF Q4_K's sub-blocks

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise ValueError(f"unknown quantization scheme {self.scheme!r}; known: {SCHEMES}")
        if self.scheme == "int4" and self.group_size not in INT4_GROUP_SIZES:
            raise ValueError(f"int4 group_size must be one of {INT4_GROUP_SIZES}, got {self.group_size}")


_ROWS_PER_BLOCK = 2048  # bounds the float32 temporaries when quantizing a large matrix (the lm_head)


def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-output-channel: (int8 [N, K], float32 scales [N]), weight ~= q * scale."""
    q = torch.empty(weight.shape, dtype=torch.int8)
    scales = torch.empty(weight.shape[0], dtype=torch.float32)
    for start in range(0, weight.shape[0], _ROWS_PER_BLOCK):
        w = weight[start:start + _ROWS_PER_BLOCK].float()
        block_scales = (w.abs().amax(dim=1) / 127).clamp(min=1e-10)
        q[start:start + _ROWS_PER_BLOCK] = torch.round(w / block_scales[:, None]).clamp(-128, 127)
        scales[start:start + _ROWS_PER_BLOCK] = block_scales
    return q, scales


def quantize_int4(weight: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Asymmetric per group of `group_size` inputs: (uint8 values 0..15 [N, K], scales_and_zeros [K/g, N, 2]).

    The layout of scales_and_zeros is torch's int4 kernel's: weight ~= (q - 8) * scale + zero.
    """
    n, k = weight.shape
    if k % group_size:
        raise ValueError(f"in_features {k} is not a multiple of the int4 group size {group_size}")
    q = torch.empty(n, k, dtype=torch.uint8)  # one byte a weight: the 150k x 1536 LM head's is 0.2 GB
    scales_and_zeros = torch.empty(k // group_size, n, 2, dtype=torch.float32)
    for start in range(0, n, _ROWS_PER_BLOCK):
        rows = slice(start, start + _ROWS_PER_BLOCK)
        w = weight[rows].float().reshape(-1, k // group_size, group_size)
        w_min, w_max = w.amin(dim=-1), w.amax(dim=-1)
        scales = ((w_max - w_min) / 15).clamp(min=1e-10)
        q[rows] = torch.round((w - w_min[..., None]) / scales[..., None]).clamp(0, 15).reshape(-1, k).to(torch.uint8)
        scales_and_zeros[:, rows] = torch.stack([scales, w_min + 8 * scales], dim=-1).transpose(0, 1)
    return q, scales_and_zeros


def pack_nibbles(q: torch.Tensor) -> torch.Tensor:
    """int values 0..15 [N, K] -> uint8 [N, K/2] (low nibble = even column): our on-disk int4 layout."""
    return (q[:, ::2] | (q[:, 1::2] << 4)).to(torch.uint8).contiguous()


def unpack_nibbles(packed: torch.Tensor) -> torch.Tensor:
    """uint8 [N, K/2] -> uint8 values 0..15 [N, K] (inverse of `pack_nibbles`)."""
    return torch.stack([packed & 0xF, packed >> 4], dim=-1).reshape(packed.shape[0], -1)


def swap_linear(model: nn.Module, config: QuantConfig, *, skip: tuple[str, ...] = ()) -> int:
    """Replaces every float `Linear` (name not in `skip`) by its quantized twin; returns how many."""
    from model.layers.linear import Int4WeightOnlyLinear, Int8WeightOnlyLinear, Linear

    swapped = 0
    for parent_name, parent in list(model.named_modules()):
        for child_name, child in list(parent.named_children()):
            full_name = f"{parent_name}.{child_name}" if parent_name else child_name
            if type(child) is not Linear or full_name in skip:
                continue
            if config.scheme == "int8":
                new = Int8WeightOnlyLinear(child.in_features, child.out_features, child.bias is not None, child.dtype)
            else:
                new = Int4WeightOnlyLinear(child.in_features, child.out_features, child.bias is not None,
                                           child.dtype, config.group_size)
            setattr(parent, child_name, new)
            swapped += 1
    return swapped


def save_quantized(model: nn.Module, folder: Path, *, config: QuantConfig, hf_config: dict,
                   tokenizer=None) -> None:
    """Writes config.json, quantization.json, model.safetensors (scheme in its metadata) and the tokenizer."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    tensors = model.checkpoint_tensors()
    metadata = {"format": "pt", "quantization": json.dumps({"scheme": config.scheme, "group_size": config.group_size})}
    save_file(tensors, str(folder / "model.safetensors"), metadata=metadata)
    (folder / "config.json").write_text(json.dumps(hf_config, indent=2))
    (folder / QUANT_FILE).write_text(json.dumps({"scheme": config.scheme, "group_size": config.group_size}))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(folder))


def read_quant_config(folder: Path) -> QuantConfig | None:
    """The scheme a folder was saved with (None for a float checkpoint)."""
    path = folder / QUANT_FILE
    return QuantConfig(**json.loads(path.read_text())) if path.exists() else None
