"""Routed experts in fp8 (float8_e4m3fn, a float32 scale per 128 x 128 tile) and the shared experts
as extra GEMV pairs: the CPU twins of what the expert GEMV kernel does on a GPU
(model/kernels/gemv.py, model/layers/moe.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from model.kernels.gemv import dequantize_fp8, expert_gemv, quantize_fp8, shared_down, shared_gate_up
from model.layers.moe import gemv_experts, gemv_experts_and_shared, looped_experts


class _FixedRoute:
    """A router that always answers the same (weights, expert ids)."""

    def __init__(self, top_k: int, weights: torch.Tensor, expert_ids: torch.Tensor) -> None:
        self.top_k, self.answer = top_k, (weights, expert_ids)

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.answer


def _swiglu(x: torch.Tensor, gate_up: torch.Tensor, down: torch.Tensor) -> torch.Tensor:
    gate, up = F.linear(x, gate_up).chunk(2, dim=-1)
    return F.linear(F.silu(gate) * up, down)


def test_fp8_tiles_round_trip_within_e4m3_precision_and_keep_ragged_edges():
    torch.manual_seed(0)
    weights = torch.randn(3, 300, 200) * torch.logspace(-3, 1, 300)[:, None]  # tiles of very different scale
    quantized, scales = quantize_fp8(weights)
    assert quantized.dtype == torch.float8_e4m3fn and quantized.shape == weights.shape
    assert scales.shape == (3, 3, 2)  # 300 x 200 in 128 x 128 tiles, the last ones partial
    restored = dequantize_fp8(quantized, scales)
    # e4m3 keeps 3 mantissa bits: a relative step of 2^-4 at most, for values near their tile's max
    assert ((restored - weights).abs() <= weights.abs() * 2 ** -4 + scales.amax() * 2 ** -9).all()


def test_shared_experts_as_gemv_pairs_add_the_merged_shared_mlp():
    torch.manual_seed(1)
    count, hidden, dim, tokens, top_k = 2, 16, 24, 3, 2
    merged_gate_up = torch.randn(2 * count * hidden, dim) * 0.2  # [gate rows; up rows], as merge_linears leaves it
    shared_down_weight = torch.randn(dim, count * hidden) * 0.2
    experts_gate_up, experts_down = torch.randn(5, 2 * hidden, dim) * 0.2, torch.randn(5, dim, hidden) * 0.2
    x = torch.randn(tokens, dim)
    expert_ids = torch.tensor([[0, 3], [4, 1], [2, 2]])
    weights = torch.rand(tokens, top_k)
    gate, up = F.linear(x, merged_gate_up).chunk(2, dim=-1)
    shared_mlp = F.linear(F.silu(gate) * up, shared_down_weight)
    residual = torch.randn(tokens, dim)
    want = residual + looped_experts(x, weights, expert_ids, experts_gate_up, experts_down) + shared_mlp
    experts = SimpleNamespace(gate_up_proj=experts_gate_up, down_proj=experts_down, first_expert=0)
    got = gemv_experts_and_shared(x, _FixedRoute(top_k, weights, expert_ids), experts,
                                  (shared_gate_up(merged_gate_up, count), shared_down(shared_down_weight, count)),
                                  residual=residual)  # added by the down GEMV on a GPU
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-5)


def test_fp8_expert_gemv_is_the_product_with_the_dequantized_weights():
    torch.manual_seed(2)
    gate_up, down = torch.randn(4, 2 * 256, 384) * 0.05, torch.randn(4, 384, 256) * 0.05
    (gate_up_q, gate_up_s), (down_q, down_s) = quantize_fp8(gate_up), quantize_fp8(down)
    x, expert_ids, weights = torch.randn(2, 384), torch.tensor([[1, 3], [0, 1]]), torch.rand(2, 2)
    want = looped_experts(x, weights, expert_ids, dequantize_fp8(gate_up_q, gate_up_s),
                          dequantize_fp8(down_q, down_s))
    got = gemv_experts(x, weights, expert_ids, gate_up_q, down_q, scales=(gate_up_s, down_s))
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-5)
    # the quantization error itself stays small next to the output
    assert (got - looped_experts(x, weights, expert_ids, gate_up, down)).norm() < 0.05 * want.norm()


def test_other_ranks_experts_give_zero_rows_in_fp8_too():
    torch.manual_seed(3)
    weights = torch.randn(4, 128, 128)
    quantized, scales = quantize_fp8(weights)
    x, ids = torch.randn(1, 128), torch.tensor([[5, 2]])  # expert 5 is on this rank (first_expert 4), 2 is not
    out = expert_gemv(x, quantized, ids, 4, scales=scales)
    assert torch.equal(out[1], torch.zeros(128))
    assert torch.allclose(out[0], dequantize_fp8(quantized[1], scales[1]) @ x[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fp8", [False, True], ids=["bf16-stacks", "fp8-stacks"])
def test_moe_decode_with_fused_shared_experts_matches_the_separate_path(fp8):
    """A V2-like MoE layer (two shared experts, softmax routing) on the sync-free GEMV path: shared
    experts as GEMV pairs (bf16 stacks) or on their own (fp8 stacks) give the per-expert loop's sum."""
    from model.config.deepseek import DeepseekConfig
    from model.layers.moe import MoE
    from model.runtime import Runtime

    config = DeepseekConfig.from_hf({
        "architectures": ["DeepseekV2ForCausalLM"], "model_type": "deepseek_v2", "vocab_size": 64,
        "hidden_size": 128, "intermediate_size": 96, "moe_intermediate_size": 32, "num_hidden_layers": 2,
        "num_attention_heads": 2, "num_key_value_heads": 2, "q_lora_rank": None, "kv_lora_rank": 16,
        "qk_nope_head_dim": 8, "qk_rope_head_dim": 8, "v_head_dim": 8, "n_routed_experts": 8,
        "num_experts_per_tok": 2, "n_shared_experts": 2, "topk_method": "greedy", "scoring_func": "softmax",
        "first_k_dense_replace": 1, "max_position_embeddings": 64})
    torch.manual_seed(4)
    runtime = Runtime(dtype=torch.float32, device="cpu", max_batch_size=1, max_seq_len=8)
    moe = MoE(config, runtime)
    for tensor in (moe.gate.weight, moe.experts.gate_up_proj, moe.experts.down_proj,
                   moe.shared_experts.gate_proj.weight, moe.shared_experts.up_proj.weight,
                   moe.shared_experts.down_proj.weight):
        tensor.data.normal_(0, 0.2)
    x = torch.randn(2, 1, 128)
    with torch.no_grad():
        if fp8:
            moe.experts.store_fp8()
        want = moe(x)  # the loop over hit experts, shared MLP separately
        moe.shared_experts.merge_projections()
        moe.experts.sync_free = True
        assert (moe._shared_operands(2) is None) == fp8
        got = moe(x)
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-5)
