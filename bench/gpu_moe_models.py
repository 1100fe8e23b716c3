"""The benchmark's models: DeepSeek-V3-architecture configs built with random weights, transformers'
model and ours over the very same tensors (bench/gpu_moe.py, bench/gpu_parallel.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.config.deepseek import DeepseekConfig  # noqa: E402
from model.models.deepseek_v3 import DeepseekV3ForCausalLM  # noqa: E402
from model.runtime import Runtime  # noqa: E402

_MLA = {"kv_lora_rank": 512, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128}
CONFIGS = {
    # DeepSeek-V2-Lite's sizes in the V3 architecture (15.7 B parameters).
    "v2-lite": {"vocab_size": 102400, "hidden_size": 2048, "intermediate_size": 10944,
                "moe_intermediate_size": 1408, "num_hidden_layers": 27, "num_attention_heads": 16,
                "num_key_value_heads": 16, "q_lora_rank": None, "n_routed_experts": 64,
                "num_experts_per_tok": 6, "n_shared_experts": 2, "n_group": 1, "topk_group": 1,
                "first_k_dense_replace": 1, "routed_scaling_factor": 1.0, "norm_topk_prob": False, **_MLA},
    # DeepSeek-V3 at full width, cut to 3 layers (25.5 B parameters).
    "v3-3layer": {"vocab_size": 129280, "hidden_size": 7168, "intermediate_size": 18432,
                  "moe_intermediate_size": 2048, "num_hidden_layers": 3, "num_attention_heads": 128,
                  "num_key_value_heads": 128, "q_lora_rank": 1536, "n_routed_experts": 256,
                  "num_experts_per_tok": 8, "n_shared_experts": 1, "n_group": 8, "topk_group": 4,
                  "first_k_dense_replace": 1, "routed_scaling_factor": 2.5, "norm_topk_prob": True, **_MLA},
    "tiny": {"vocab_size": 512, "hidden_size": 64, "intermediate_size": 128, "moe_intermediate_size": 32,
             "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 4, "q_lora_rank": 32,
             "kv_lora_rank": 16, "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 16,
             "n_routed_experts": 16, "num_experts_per_tok": 4, "n_shared_experts": 1, "n_group": 4,
             "topk_group": 2, "first_k_dense_replace": 1, "routed_scaling_factor": 2.5, "norm_topk_prob": True},
}
PROMPT_LEN, PARITY_STEPS, MAX_SEQ_LEN = 32, 8, 256


def build_models(sizes: dict, device: str, max_batch_size: int, dtype: torch.dtype = torch.bfloat16):
    """(transformers model, ours) holding the same weight tensors (same seed: same weights on every rank)."""
    import transformers

    hf_config = transformers.DeepseekV3Config(**sizes, max_position_embeddings=4096)
    torch.manual_seed(0)
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            reference = transformers.DeepseekV3ForCausalLM(hf_config).eval()
    finally:
        torch.set_default_dtype(default_dtype)
    return reference, ours_sharing(reference, device, max_batch_size)


def ours_sharing(reference: nn.Module, device: str, max_batch_size: int) -> nn.Module:
    """Our model over the reference's weight tensors (its dtype; caches on `device`)."""
    dtype = reference.dtype
    runtime = Runtime(dtype=dtype, device=device, max_batch_size=max_batch_size, max_seq_len=MAX_SEQ_LEN)
    with torch.device("meta"):  # weights come from the reference; caches are made on runtime.device
        ours = DeepseekV3ForCausalLM(DeepseekConfig.from_hf(reference.config.to_dict()), runtime)
    share_weights(reference, ours)
    return ours.eval()


def share_weights(reference: nn.Module, ours: nn.Module) -> None:
    """Points every parameter of ours at the reference tensor of the same name (the names are the
    checkpoints' own, and both stack the experts as gate_up [E, 2I, D] / down [E, D, I])."""
    theirs = reference.state_dict()
    for name, _ in list(ours.named_parameters()):
        module_name, _, param_name = name.rpartition(".")
        module = ours.get_submodule(module_name)
        module._parameters[param_name] = nn.Parameter(theirs[name].detach(), requires_grad=False)
    for name, buffer in ours.named_buffers():
        if name in theirs:  # the router's correction bias; caches and rope tables are ours alone
            buffer.copy_(theirs[name])


def bytes_per_token(ours: nn.Module, config: DeepseekConfig) -> int:
    """Weight bytes one decoded token reads at batch 1: all but the embedding table (one row of it)
    and the routed experts that were not chosen (each expert's slice of every stacked tensor, fp8
    scales included when the experts are stored in fp8)."""
    total = sum(p.numel() * p.element_size() for p in ours.parameters())
    embedding = ours.model.embed_tokens.weight
    total -= embedding.numel() * embedding.element_size() - embedding.shape[1] * embedding.element_size()
    for module in ours.modules():
        if hasattr(module, "gate_up_proj"):
            per_expert = sum(p[0].numel() * p.element_size() for p in module.parameters())
            total -= per_expert * (module.num_experts - config.num_experts_per_tok)
    return total
