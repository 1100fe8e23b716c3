"""`DenseConfig`: the fields the dense decoder (Qwen2, Llama, and the R1-distill models) really uses."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Self

# HF config.json name -> our field name (one table; fields absent here are derived in `from_hf`).
_HF_NAMES = {
    "vocab_size": "vocab_size",
    "hidden_size": "hidden_size",
    "intermediate_size": "intermediate_size",
    "num_hidden_layers": "num_layers",
    "num_attention_heads": "num_heads",
    "num_key_value_heads": "num_kv_heads",
    "head_dim": "head_dim",
    "rms_norm_eps": "rms_norm_eps",
    "max_position_embeddings": "max_position_embeddings",
    "tie_word_embeddings": "tie_word_embeddings",
    "mlp_bias": "mlp_bias",
}

# Which linear layers carry a bias, per model_type. Qwen2 always has q/k/v biases and no config
# flag for them; Llama's `attention_bias` covers q/k/v and o.
_ATTENTION_BIASES = {
    "qwen2": lambda cfg: (True, False),
    "llama": lambda cfg: (bool(cfg.get("attention_bias", False)),) * 2,
}

ROPE_TYPES = ("default", "llama3")


@dataclass(frozen=True)
class DenseConfig:
    model_type: str  # "qwen2" | "llama"
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float = 1e-6
    max_position_embeddings: int = 32768
    tie_word_embeddings: bool = False
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    rope_theta: float = 10000.0
    # Extra rope_parameters for "llama3" scaling (factor, low/high_freq_factor, original_max_...).
    rope_type: str = "default"
    rope_scaling: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.model_type not in _ATTENTION_BIASES:
            raise ValueError(f"unsupported dense model_type {self.model_type!r}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads {self.num_heads} is not a multiple of num_kv_heads {self.num_kv_heads}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim must be even for RoPE, got {self.head_dim}")
        if self.rope_type not in ROPE_TYPES:
            raise ValueError(f"unsupported rope_type {self.rope_type!r}; known: {ROPE_TYPES}")

    @classmethod
    def from_hf(cls, config_dict: dict[str, Any]) -> Self:
        model_type = config_dict["model_type"]
        if model_type not in _ATTENTION_BIASES:
            raise ValueError(f"unsupported dense model_type {model_type!r}")
        if config_dict.get("use_sliding_window"):
            raise ValueError("sliding-window attention is not supported")
        values = {ours: config_dict[hf] for hf, ours in _HF_NAMES.items() if config_dict.get(hf) is not None}
        values.setdefault("num_kv_heads", values["num_heads"])
        values.setdefault("head_dim", values["hidden_size"] // values["num_heads"])
        values["qkv_bias"], values["o_bias"] = _ATTENTION_BIASES[model_type](config_dict)
        # transformers >= 5 nests RoPE settings in `rope_parameters`; older files use
        # top-level `rope_theta` plus `rope_scaling`.
        rope = dict(config_dict.get("rope_parameters") or config_dict.get("rope_scaling") or {})
        rope_theta = rope.pop("rope_theta", config_dict.get("rope_theta", 10000.0))
        rope_type = rope.pop("rope_type", rope.pop("type", "default"))
        return cls(model_type=model_type, rope_theta=float(rope_theta), rope_type=rope_type,
                   rope_scaling=rope, **values)

    def to_hf(self) -> dict[str, Any]:
        """The config.json of a folder we write (e.g. a quantized copy of a GGUF model)."""
        ours_to_hf = {ours: hf for hf, ours in _HF_NAMES.items()}
        out = {ours_to_hf[f.name]: getattr(self, f.name) for f in fields(self) if f.name in ours_to_hf}
        out["model_type"] = self.model_type
        out["architectures"] = [{"qwen2": "Qwen2ForCausalLM", "llama": "LlamaForCausalLM"}[self.model_type]]
        out["rope_parameters"] = {"rope_type": self.rope_type, "rope_theta": self.rope_theta, **self.rope_scaling}
        if self.model_type == "llama":
            out["attention_bias"] = self.qkv_bias
        return out
