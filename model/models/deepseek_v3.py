"""The DeepSeek-V3/R1 decoder, which also serves DeepSeek-V2/V2-Lite (the registry maps both names here).

The families differ only in config: V2 routes with softmax greedy / group-limited top-k and has no
q LoRA on Lite; V3 routes with biased sigmoid scores (noaux_tc). Module names mirror the HF
checkpoints' own, except the routed experts, which are stacked (see `_EXPERT_NAME`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import torch
from torch import nn

from model.config.deepseek import DeepseekConfig
from model.layers.attention import causal_slot_mask
from model.layers.linear import Embedding, Linear
from model.layers.mla import MultiHeadLatentAttention, rope_cos_sin, rope_parameters
from model.layers.moe import EXPERT_PROJECTIONS, FeedForward, MoE
from model.layers.norm import RMSNorm
from model.runtime import Runtime

# "model.layers.3.mlp.experts.17.up_proj.weight" -> the stacked experts of layer 3, expert 17, up_proj.
_EXPERT_NAME = re.compile(r"^(model\.layers\.\d+\.mlp\.experts)\.(\d+)\.(gate_proj|up_proj|down_proj)"
                          r"\.weight$")
_LAYER_INDEX = re.compile(r"^model\.layers\.(\d+)\.")


class DecoderLayer(nn.Module):
    def __init__(self, config: DeepseekConfig, runtime: Runtime, layer_index: int) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps, runtime.dtype)
        self.self_attn = MultiHeadLatentAttention(config, runtime)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps, runtime.dtype)
        self.mlp = (MoE(config, runtime) if config.is_moe_layer(layer_index) else
                    FeedForward(config.hidden_size, config.intermediate_size, config.mlp_bias, runtime.dtype))

    def forward(self, x, cos, sin, positions, slots, mask, softmax_scale, num_keys=None) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, positions, slots, mask, softmax_scale,
                               num_keys)
        # A MoE may add x inside its last kernel (not once wrapped, as model/parallel.py wraps it)
        if isinstance(self.mlp, MoE):
            return self.mlp(self.post_attention_layernorm(x), residual=x)
        return x + self.mlp(self.post_attention_layernorm(x))


class DecoderStack(nn.Module):
    def __init__(self, config: DeepseekConfig, runtime: Runtime) -> None:
        super().__init__()
        self.embed_tokens = Embedding(config.vocab_size, config.hidden_size, runtime.dtype)
        self.layers = nn.ModuleList(DecoderLayer(config, runtime, i) for i in range(config.num_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps, runtime.dtype)


class DeepseekV3ForCausalLM(nn.Module):
    def __init__(self, config: DeepseekConfig, runtime: Runtime) -> None:
        super().__init__()
        if runtime.max_seq_len > config.max_position_embeddings:
            raise ValueError(f"max_seq_len {runtime.max_seq_len} exceeds the model's "
                             f"max_position_embeddings {config.max_position_embeddings}")
        self.config, self.runtime = config, runtime
        self.model = DecoderStack(config, runtime)
        self.lm_head = Linear(config.hidden_size, config.vocab_size, False, runtime.dtype)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        inv_freq, self.rope_attention_factor, self.softmax_scale = rope_parameters(config)
        self.register_buffer("inv_freq", inv_freq.to(runtime.device), persistent=False)

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor, slots: torch.Tensor, *,
                num_keys: int | None = None, last_only: bool = False) -> torch.Tensor:
        """tokens, positions [B, T]; slots [B] -> logits [B, T, vocab] (float32).

        num_keys: attend over that many cache positions of each slot (masked past each row's own
        position) instead of up to the batch's last position, which the host would have to read from
        the device. Fixed shapes and no host sync: what a captured CUDA graph replays.
        """
        device = self.inv_freq.device
        tokens, positions, slots = tokens.to(device), positions.to(device), slots.to(device)
        if num_keys is None and int(positions.max()) >= self.runtime.max_seq_len:
            raise ValueError(f"position {int(positions.max())} is past max_seq_len "
                             f"{self.runtime.max_seq_len}")
        cos, sin = rope_cos_sin(positions, self.inv_freq, self.rope_attention_factor, self.runtime.dtype)
        mask = causal_slot_mask(positions, num_keys)
        x = self.model.embed_tokens(tokens)
        for layer in self.model.layers:
            x = layer(x, cos, sin, positions, slots, mask, self.softmax_scale, num_keys)
        if last_only:  # [B, 1, vocab]: generation needs no LM head over the rest of the prompt
            x = x[:, -1:]
        return self.lm_head(self.model.norm(x)).float()

    def reset_cache(self) -> None:
        for layer in self.model.layers:
            layer.self_attn.reset_cache()

    def _loadable_modules(self) -> dict[str, nn.Module]:
        modules = {name: m for name, m in self.named_modules() if hasattr(m, "load_tensor")}
        if getattr(self.lm_head, "weight", None) is self.model.embed_tokens.weight:
            del modules["lm_head"]
        return modules

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Loads HF-named tensors (float, or our saved int8/int4 ones); raises on unknown or missing names."""
        modules = self._loadable_modules()
        experts = {name: m for name, m in self.named_modules() if name.endswith(".mlp.experts")}
        loaded: dict[str, set[str]] = {name: set() for name in modules | experts}
        for name, tensor in weights:
            if (name == "lm_head.weight" and self.config.tie_word_embeddings) or self._is_mtp_tensor(name):
                continue
            expert_match = _EXPERT_NAME.match(name)
            if expert_match and expert_match.group(1) in experts:
                experts_name, expert, projection = expert_match.groups()
                experts[experts_name].load_expert(int(expert), projection, tensor)
                loaded[experts_name].add(f"{expert}.{projection}")
                continue
            module_name, _, tensor_name = name.rpartition(".")
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
        missing += [f"{name}.{e}.{p}.weight" for name, module in experts.items()
                    for e in range(module.num_experts) for p in EXPERT_PROJECTIONS
                    if f"{e}.{p}" not in loaded[name]]
        if missing:
            raise KeyError(f"checkpoint lacks {len(missing)} tensors, e.g. {missing[:5]}")
        # On a GPU a decode step is launch-bound, so one GEMV per input beats two. Not on the CPU,
        # where models may still be sharded after loading (model/parallel.py; see merge_projections).
        if self.runtime.device != "cpu":
            self.merge_projections()
        if self.runtime.fp8_experts:
            self.store_experts_fp8()

    def store_experts_fp8(self) -> None:
        """Every layer's routed experts as float8 with tile scales (RoutedExperts.store_fp8); after
        loading and any sharding, which cut the stacks but not the scales."""
        for layer in self.model.layers:
            if isinstance(layer.mlp, MoE):
                layer.mlp.experts.store_fp8()

    def merge_projections(self) -> None:
        """Each layer's projections of one input as one matrix (model/layers/merged.py): q_proj or
        q_a_proj with kv_a_proj_with_mqa, gate_proj with up_proj. After loading and any sharding."""
        for module in self.modules():
            if module is not self and hasattr(module, "merge_projections"):
                module.merge_projections()

    def checkpoint_tensors(self) -> dict[str, torch.Tensor]:
        """HF-named tensors of a saved copy of this model (quantized modules save their own format)."""
        modules = self._loadable_modules() | {name: m for name, m in self.named_modules()
                                              if name.endswith(".mlp.experts")}
        return {f"{name}.{t}": tensor for name, module in modules.items()
                for t, tensor in module.checkpoint_tensors().items()}

    def _is_mtp_tensor(self, name: str) -> bool:
        """V3/R1 checkpoints append multi-token-prediction layers after the last decoder layer; they
        only serve speculative decoding, which we do not run."""
        match = _LAYER_INDEX.match(name)
        return match is not None and (self.config.num_layers <= int(match.group(1))
                                      < self.config.num_layers + self.config.num_nextn_predict_layers)


def _missing_tensors(module: nn.Module, got: set[str]) -> list[str]:
    """A module is complete with its own saved tensors, or (a linear layer) with the float ones it
    quantizes itself."""
    own = set(module.checkpoint_names())
    from_float = {"weight"} | ({"bias"} if getattr(module, "bias", None) is not None else set())
    is_quantizable = hasattr(module, "in_features")
    return [] if got >= own or (is_quantizable and got >= from_float) else sorted(own - got)
