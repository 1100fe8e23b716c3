"""The dense decoder shared by Llama and Qwen2 (and the R1-distill models built on them).

The two differ only in config (Qwen2: q/k/v biases; Llama: optional `attention_bias`, `mlp_bias`,
Llama-3 RoPE scaling), so this one implementation serves both; qwen2.py registers the other name.
Module names mirror the HF checkpoints' own, so the checkpoint name table is the identity.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from model.config.dense import DenseConfig
from model.layers.attention import SlotCacheAttention, causal_slot_mask
from model.layers.linear import Embedding, Linear
from model.layers.norm import RMSNorm
from model.layers.rope import rope_cos_sin, rope_inv_freq
from model.runtime import Runtime


class MLP(nn.Module):
    def __init__(self, config: DenseConfig, runtime: Runtime) -> None:
        super().__init__()
        dim, hidden, bias, dtype = config.hidden_size, config.intermediate_size, config.mlp_bias, runtime.dtype
        self.gate_proj = Linear(dim, hidden, bias, dtype)
        self.up_proj = Linear(dim, hidden, bias, dtype)
        self.down_proj = Linear(hidden, dim, bias, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, config: DenseConfig, runtime: Runtime) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps, runtime.dtype)
        self.self_attn = SlotCacheAttention(config, runtime)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps, runtime.dtype)
        self.mlp = MLP(config, runtime)

    def forward(self, x, cos, sin, positions, slots, mask) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, positions, slots, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class DecoderStack(nn.Module):
    def __init__(self, config: DenseConfig, runtime: Runtime) -> None:
        super().__init__()
        self.embed_tokens = Embedding(config.vocab_size, config.hidden_size, runtime.dtype)
        self.layers = nn.ModuleList(DecoderLayer(config, runtime) for _ in range(config.num_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps, runtime.dtype)


class LlamaForCausalLM(nn.Module):
    def __init__(self, config: DenseConfig, runtime: Runtime) -> None:
        super().__init__()
        if runtime.max_seq_len > config.max_position_embeddings:
            raise ValueError(f"max_seq_len {runtime.max_seq_len} exceeds the model's "
                             f"max_position_embeddings {config.max_position_embeddings}")
        self.config, self.runtime = config, runtime
        self.model = DecoderStack(config, runtime)
        self.lm_head = Linear(config.hidden_size, config.vocab_size, False, runtime.dtype)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        self.register_buffer("inv_freq", rope_inv_freq(config.head_dim, config.rope_theta, config.rope_type,
                                                       config.rope_scaling), persistent=False)

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor, slots: torch.Tensor, *,
                last_only: bool = False) -> torch.Tensor:
        """tokens, positions [B, T]; slots [B] -> logits [B, T, vocab] (float32).

        last_only: logits of the last position only, [B, 1, vocab] — all that generation needs after
        a prefill; the LM head (the largest matrix) then skips every other prompt position.
        """
        device = self.inv_freq.device
        tokens, positions, slots = tokens.to(device), positions.to(device), slots.to(device)
        if int(positions.max()) >= self.runtime.max_seq_len:
            raise ValueError(f"position {int(positions.max())} is past max_seq_len {self.runtime.max_seq_len}")
        cos, sin = rope_cos_sin(positions, self.inv_freq, self.runtime.dtype)
        mask = causal_slot_mask(positions)
        x = self.model.embed_tokens(tokens)
        for layer in self.model.layers:
            x = layer(x, cos, sin, positions, slots, mask)
        if last_only:
            x = x[:, -1:]
        return self.lm_head(self.model.norm(x)).float()

    def reset_cache(self) -> None:
        for layer in self.model.layers:
            layer.self_attn.reset_cache()

    def _loadable_modules(self) -> dict[str, nn.Module]:
        modules = {name: m for name, m in self.named_modules() if hasattr(m, "load_tensor")}
        if self._lm_head_shares_embedding():
            del modules["lm_head"]
        return modules

    def _lm_head_shares_embedding(self) -> bool:
        return getattr(self.lm_head, "weight", None) is self.model.embed_tokens.weight

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Loads HF-named tensors (float, or our saved int8/int4 ones); raises on unknown or missing names."""
        modules = self._loadable_modules()
        loaded: dict[str, set[str]] = {name: set() for name in modules}
        for name, tensor in weights:
            module_name, _, tensor_name = name.rpartition(".")
            if module_name == "lm_head" and self._lm_head_shares_embedding():
                continue  # some tied checkpoints still carry a copy
            if module_name not in modules:
                raise KeyError(f"checkpoint tensor {name!r} has no place in {type(self).__name__}")
            modules[module_name].load_tensor(tensor_name, tensor)
            loaded[module_name].add(tensor_name)
        if self.config.tie_word_embeddings and "lm_head" in modules and not loaded["lm_head"]:
            # A quantized lm_head tied to the embedding: quantize its own copy of the embedding.
            modules["lm_head"].load_tensor("weight", self.model.embed_tokens.weight.data)
            loaded["lm_head"].add("weight")
        missing = [f"{name}.{t}" for name, module in modules.items()
                   for t in _missing_tensors(module, loaded[name])]
        if missing:
            raise KeyError(f"checkpoint lacks {len(missing)} tensors, e.g. {missing[:5]}")

    def checkpoint_tensors(self) -> dict[str, torch.Tensor]:
        """HF-named tensors of a saved copy of this model (quantized modules save their own format)."""
        return {f"{name}.{t}": tensor for name, module in self._loadable_modules().items()
                for t, tensor in module.checkpoint_tensors().items()}


def _missing_tensors(module: nn.Module, got: set[str]) -> list[str]:
    """A module is complete with its own saved tensors, or with the float ones it quantizes itself."""
    own = set(module.checkpoint_names())
    from_float = {"weight"} | ({"bias"} if getattr(module, "bias", None) is not None else set())
    return [] if got >= own or got >= from_float else sorted(own - got)
