"""GGUF files (llama.cpp's format) for the dense qwen2/llama models: config, HF-named tensors, tokenizer.

Tensors are dequantized with the `gguf` package one tensor (and a block of rows) at a time, so a
caller that quantizes as it loads never holds the whole model in float.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import torch

from model.config.dense import DenseConfig
from model.quant import pack_nibbles

# GGUF metadata key (after "<arch>.") -> HF config.json name.
_HF_CONFIG_KEYS = {
    "block_count": "num_hidden_layers",
    "context_length": "max_position_embeddings",
    "embedding_length": "hidden_size",
    "feed_forward_length": "intermediate_size",
    "attention.head_count": "num_attention_heads",
    "attention.head_count_kv": "num_key_value_heads",
    "attention.key_length": "head_dim",
    "rope.freq_base": "rope_theta",
    "attention.layer_norm_rms_epsilon": "rms_norm_eps",
}

_GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_BLOCK_NAMES = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_BLOCK_RE = re.compile(r"blk\.(\d+)\.(\w+)\.(weight|bias)")
_SUPPORTED_ARCHS = {"qwen2": "Qwen2ForCausalLM", "llama": "LlamaForCausalLM"}
_ROWS_PER_DEQUANT = 4096  # bounds the float32 scratch of the largest tensor (the embedding)


class GGUFFormatError(ValueError):
    pass


def hf_name(gguf_name: str) -> str:
    if gguf_name in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[gguf_name]
    match = _BLOCK_RE.fullmatch(gguf_name)
    if match is None or match.group(2) not in _BLOCK_NAMES:
        raise GGUFFormatError(f"unknown GGUF tensor {gguf_name!r}")
    layer, part, kind = match.groups()
    return f"model.layers.{layer}.{_BLOCK_NAMES[part]}.{kind}"


class GGUFModel:
    """An opened (memory-mapped) GGUF file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.reader = gguf.GGUFReader(str(path))
        self.tensors = {t.name: t for t in self.reader.tensors}
        self.architecture = self._field("general.architecture")
        if self.architecture not in _SUPPORTED_ARCHS:
            raise GGUFFormatError(f"GGUF architecture {self.architecture!r} is not supported "
                                  f"(known: {sorted(_SUPPORTED_ARCHS)})")
        if "rope_freqs.weight" in self.tensors:
            raise GGUFFormatError("GGUF with precomputed rope_freqs (Llama-3 RoPE scaling) is not supported yet")

    def _field(self, key: str, default: Any = None) -> Any:
        field = self.reader.fields.get(key)
        return default if field is None else field.contents()

    def hf_config(self) -> dict[str, Any]:
        """The equivalent HF config.json."""
        config = {"model_type": self.architecture, "architectures": [_SUPPORTED_ARCHS[self.architecture]]}
        for key, hf_key in _HF_CONFIG_KEYS.items():
            value = self._field(f"{self.architecture}.{key}")
            if value is not None:
                config[hf_key] = value
        config["vocab_size"] = int(self.tensors["token_embd.weight"].shape[-1])
        config["tie_word_embeddings"] = "output.weight" not in self.tensors
        if self.architecture == "llama":
            config["attention_bias"] = "blk.0.attn_q.bias" in self.tensors
        return config

    def config(self) -> DenseConfig:
        return DenseConfig.from_hf(self.hf_config())

    def iter_weights(self, dtype: torch.dtype, *, int4_group_size: int | None = None
                     ) -> Iterator[tuple[str, torch.Tensor]]:
        """HF-named tensors in `dtype`, dequantized one at a time.

        With int4_group_size=32, Q4_K weights come out as int4 "qweight" + "scales_and_zeros"
        tensors instead (exact, and no float round trip) for int4 layers to take as they are.
        """
        config = self.config()
        for name, tensor in self.tensors.items():
            # Not for the embedding (a float lookup table) nor Llama (its q/k rows would need un-permuting).
            if int4_group_size == 32 and tensor.tensor_type == gguf.GGMLQuantizationType.Q4_K \
                    and name != "token_embd.weight" and self.architecture != "llama":
                q, scales_and_zeros = q4k_as_int4(tensor)
                prefix = hf_name(name).removesuffix(".weight")
                yield f"{prefix}.qweight", pack_nibbles(q)
                yield f"{prefix}.scales_and_zeros", scales_and_zeros
                continue
            weight = dequantize(tensor, dtype)
            if self.architecture == "llama" and name.endswith(("attn_q.weight", "attn_k.weight")):
                # llama.cpp's converter interleaves the rotary halves of Llama q/k rows; undo it.
                heads = config.num_heads if "attn_q" in name else config.num_kv_heads
                weight = unpermute_rotary_rows(weight, heads)
            yield hf_name(name), weight

    def tokenizer(self):
        """The tokenizer and chat template in the file's metadata (None if it carries none)."""
        from transformers import AutoTokenizer

        if "tokenizer.ggml.model" not in self.reader.fields:
            return None
        return AutoTokenizer.from_pretrained(str(self.path.parent), gguf_file=self.path.name)


def dequantize(tensor, dtype: torch.dtype) -> torch.Tensor:
    """A GGUF tensor as a torch tensor of HF shape (rows = output features) in `dtype`."""
    data = tensor.data
    shape = tuple(int(d) for d in reversed(tensor.shape))
    if tensor.tensor_type in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
        return torch.tensor(np.asarray(data), dtype=dtype).reshape(shape)
    out = torch.empty(shape, dtype=dtype)
    for start in range(0, shape[0], _ROWS_PER_DEQUANT):
        rows = gguf.quants.dequantize(data[start:start + _ROWS_PER_DEQUANT], tensor.tensor_type)
        out[start:start + _ROWS_PER_DEQUANT] = torch.from_numpy(rows)
    return out


def unpermute_rotary_rows(weight: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Inverse of llama.cpp's q/k permutation: per head, rows (pairs interleaved) -> (first halves, second halves)."""
    rows = weight.shape[0]
    return (weight.reshape(num_heads, rows // num_heads // 2, 2, *weight.shape[1:])
            .transpose(1, 2).reshape(weight.shape))


def q4k_as_int4(tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A Q4_K tensor, exactly, as (int32 values 0..15 [N, K], scales_and_zeros [K/32, N, 2]) for the int4 kernel.

    Q4_K stores, per 32-weight sub-block, w = d*sc*q - dmin*m; the kernel computes
    (q - 8)*scale + zero, so scale = d*sc and zero = 8*scale - dmin*m, with the same 4-bit q.
    """
    rows = int(tensor.shape[-1])
    blocks = np.asarray(tensor.data).reshape(-1, 144)  # 256 weights per block
    d, dmin, packed_scales, qs = np.split(blocks, [2, 4, 16], axis=1)
    sub_scales, sub_mins = gguf.quants.Q4_K.get_scale_min(packed_scales)
    scale = d.view(np.float16).astype(np.float32) * sub_scales  # (blocks, 8)
    offset = dmin.view(np.float16).astype(np.float32) * sub_mins
    # 32 bytes hold two sub-blocks: low nibbles the first, high nibbles the second.
    nibbles = (qs.reshape(-1, 4, 1, 32) >> np.array([0, 4], dtype=np.uint8).reshape(1, 1, 2, 1)) & 0x0F
    q = torch.from_numpy(nibbles.reshape(rows, -1).astype(np.int32))
    scale_t, zero_t = torch.from_numpy(scale.reshape(rows, -1)), torch.from_numpy((8 * scale - offset).reshape(rows, -1))
    return q, torch.stack([scale_t, zero_t], dim=-1).transpose(0, 1).contiguous()
