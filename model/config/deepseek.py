"""`DeepseekConfig`: the fields the DeepSeek-V3/R1 and V2/V2-Lite decoder uses, from their config.json.

Variants are chosen by these fields only (q_lora_rank None = no query LoRA, topk_method,
scoring_func, rope type), never by tensor sizes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Self

# HF config.json name -> our field name (one table; rope settings and per-family defaults: see `from_hf`).
_HF_NAMES = {
    "vocab_size": "vocab_size",
    "hidden_size": "hidden_size",
    "intermediate_size": "intermediate_size",
    "moe_intermediate_size": "moe_intermediate_size",
    "num_hidden_layers": "num_layers",
    "num_attention_heads": "num_heads",
    "q_lora_rank": "q_lora_rank",
    "kv_lora_rank": "kv_lora_rank",
    "qk_nope_head_dim": "qk_nope_head_dim",
    "qk_rope_head_dim": "qk_rope_head_dim",
    "v_head_dim": "v_head_dim",
    "n_routed_experts": "n_routed_experts",
    "n_shared_experts": "n_shared_experts",
    "num_experts_per_tok": "num_experts_per_tok",
    "n_group": "n_group",
    "topk_group": "topk_group",
    "topk_method": "topk_method",
    "scoring_func": "scoring_func",
    "norm_topk_prob": "norm_topk_prob",
    "routed_scaling_factor": "routed_scaling_factor",
    "first_k_dense_replace": "first_k_dense_replace",
    "moe_layer_freq": "moe_layer_freq",
    "rms_norm_eps": "rms_norm_eps",
    "max_position_embeddings": "max_position_embeddings",
    "tie_word_embeddings": "tie_word_embeddings",
    "attention_bias": "attention_bias",
    "mlp_bias": "mlp_bias",
    "hidden_act": "hidden_act",
    "num_nextn_predict_layers": "num_nextn_predict_layers",
}

# What each family does when its config.json leaves a routing field out (the defaults of the
# reference configs: V3 routes with biased sigmoid scores, V2 with plain softmax).
_FAMILY_DEFAULTS = {
    "deepseek_v3": {"topk_method": "noaux_tc", "scoring_func": "sigmoid", "norm_topk_prob": True,
                    "routed_scaling_factor": 2.5, "first_k_dense_replace": 3},
    "deepseek_v2": {"topk_method": "greedy", "scoring_func": "softmax", "norm_topk_prob": False,
                    "routed_scaling_factor": 1.0, "first_k_dense_replace": 0},
}

TOPK_METHODS = ("greedy", "group_limited_greedy", "noaux_tc")
SCORING_FUNCS = ("softmax", "sigmoid")
ROPE_TYPES = ("default", "yarn")


@dataclass(frozen=True)
class DeepseekConfig:
    model_type: str  # "deepseek_v3" | "deepseek_v2"
    vocab_size: int
    hidden_size: int
    intermediate_size: int  # of the dense (first_k_dense_replace) layers
    moe_intermediate_size: int  # of one routed expert; shared experts are n_shared_experts times wider
    num_layers: int
    num_heads: int
    q_lora_rank: int | None
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int
    n_routed_experts: int
    n_shared_experts: int
    num_experts_per_tok: int
    topk_method: str
    scoring_func: str
    norm_topk_prob: bool
    routed_scaling_factor: float
    first_k_dense_replace: int
    n_group: int = 1
    topk_group: int = 1
    moe_layer_freq: int = 1
    rms_norm_eps: float = 1e-6
    max_position_embeddings: int = 4096
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    mlp_bias: bool = False
    hidden_act: str = "silu"
    num_nextn_predict_layers: int = 0  # multi-token-prediction layers stored after the decoder layers
    # Whether the rope dims are laid out as interleaved pairs (x0, x1), (x2, x3)... (DeepSeek's own
    # checkpoints) or as two halves (rotate-half); V3's config says which, V2 is always interleaved.
    rope_interleave: bool = True
    rope_theta: float = 10000.0
    rope_type: str = "default"
    # YaRN parameters (factor, original_max_position_embeddings, beta_fast, beta_slow, mscale,
    # mscale_all_dim, attention_factor, truncate) as the config states them.
    rope_scaling: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.model_type not in _FAMILY_DEFAULTS:
            raise ValueError(f"unsupported model_type {self.model_type!r}; known: {sorted(_FAMILY_DEFAULTS)}")
        if self.topk_method not in TOPK_METHODS:
            raise ValueError(f"unsupported topk_method {self.topk_method!r}; known: {TOPK_METHODS}")
        if self.scoring_func not in SCORING_FUNCS:
            raise ValueError(f"unsupported scoring_func {self.scoring_func!r}; known: {SCORING_FUNCS}")
        if self.rope_type not in ROPE_TYPES:
            raise ValueError(f"unsupported rope type {self.rope_type!r}; known: {ROPE_TYPES}")
        if self.hidden_act != "silu":
            raise ValueError(f"unsupported hidden_act {self.hidden_act!r}; known: ('silu',)")
        if self.qk_rope_head_dim % 2:
            raise ValueError(f"qk_rope_head_dim must be even, got {self.qk_rope_head_dim}")
        if self.n_routed_experts % self.n_group:
            raise ValueError(f"n_routed_experts {self.n_routed_experts} is not a multiple of "
                             f"n_group {self.n_group}")
        if not 1 <= self.topk_group <= self.n_group:
            raise ValueError(f"topk_group must be in 1..n_group={self.n_group}, got {self.topk_group}")
        if self.num_experts_per_tok > self.n_routed_experts // self.n_group * self.topk_group:
            raise ValueError(f"num_experts_per_tok {self.num_experts_per_tok} exceeds the experts of "
                             f"{self.topk_group} groups")
        if self.rope_type == "yarn" and "factor" not in self.rope_scaling:
            raise ValueError("yarn rope scaling needs a 'factor'")

    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    def is_moe_layer(self, layer_index: int) -> bool:
        return (self.n_routed_experts > 0 and layer_index >= self.first_k_dense_replace
                and layer_index % self.moe_layer_freq == 0)

    @classmethod
    def from_hf(cls, config_dict: dict[str, Any]) -> Self:
        model_type = config_dict["model_type"]
        if model_type not in _FAMILY_DEFAULTS:
            raise ValueError(f"unsupported model_type {model_type!r}; known: {sorted(_FAMILY_DEFAULTS)}")
        values = dict(_FAMILY_DEFAULTS[model_type])
        values |= {ours: config_dict[hf] for hf, ours in _HF_NAMES.items() if config_dict.get(hf) is not None}
        values["q_lora_rank"] = config_dict.get("q_lora_rank")  # None is meaningful: no query LoRA
        values.setdefault("n_shared_experts", 0)
        values.setdefault("n_group", 1)
        values.setdefault("topk_group", values["n_group"])
        is_interleaved = model_type == "deepseek_v2" or bool(config_dict.get("rope_interleave", True))
        values["rope_interleave"] = is_interleaved
        # transformers >= 5 writes `rope_parameters` (theta inside); older files have
        # top-level `rope_theta` plus `rope_scaling` with "type" or "rope_type".
        rope = dict(config_dict.get("rope_parameters") or config_dict.get("rope_scaling") or {})
        values["rope_theta"] = float(rope.pop("rope_theta", config_dict.get("rope_theta", 10000.0)))
        values["rope_type"] = rope.pop("rope_type", rope.pop("type", "default"))
        if values["rope_type"] == "yarn":
            rope.setdefault("original_max_position_embeddings", values.get("max_position_embeddings", 4096))
        values["rope_scaling"] = rope if values["rope_type"] != "default" else {}
        return cls(model_type=model_type, **values)
