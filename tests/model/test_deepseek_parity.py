"""Our DeepSeek-V3/V2 model gives transformers' logits (float32) on tiny random checkpoints, for
prefill (naive MLA) and for single-token decode (absorbed MLA over the latent cache)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import transformers

from model.config.deepseek import DeepseekConfig
from model.layers.mla import rope_parameters
from model.loader import iter_safetensors, load_model

TOLERANCE = 1e-4  # max|ours - ref| / max|ref|
DECODE_STEPS = 8
VOCAB = 320

_SIZES = {"vocab_size": VOCAB, "hidden_size": 64, "intermediate_size": 96, "moe_intermediate_size": 32,
          "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 4, "kv_lora_rank": 16,
          "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 12, "n_routed_experts": 8,
          "num_experts_per_tok": 2, "max_position_embeddings": 256,
          # Wider than the default 0.02 so router scores are far apart: a near-tie could flip a
          # top-k choice on rounding alone, in either implementation.
          "initializer_range": 0.2}
_YARN = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 64,
         "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 0.8}

CASES = {
    "v3-qlora-yarn-groups": (transformers.DeepseekV3Config, transformers.DeepseekV3ForCausalLM, {
        "q_lora_rank": 24, "n_group": 4, "topk_group": 2, "n_shared_experts": 1, "first_k_dense_replace": 1,
        "routed_scaling_factor": 2.5, "norm_topk_prob": True, "rope_parameters": _YARN}),
    "v3-no-qlora-rotate-half-tied": (transformers.DeepseekV3Config, transformers.DeepseekV3ForCausalLM, {
        "q_lora_rank": None, "n_group": 2, "topk_group": 1, "n_shared_experts": 2, "first_k_dense_replace": 2,
        "norm_topk_prob": False, "rope_interleave": False, "tie_word_embeddings": True}),
    "v2-softmax-greedy": (transformers.DeepseekV2Config, transformers.DeepseekV2ForCausalLM, {
        "q_lora_rank": None, "topk_method": "greedy", "n_shared_experts": 2, "first_k_dense_replace": 1,
        "routed_scaling_factor": 1.0}),
    "v2-group-limited-qlora-yarn": (transformers.DeepseekV2Config, transformers.DeepseekV2ForCausalLM, {
        "q_lora_rank": 24, "topk_method": "group_limited_greedy", "n_group": 2, "topk_group": 1,
        "n_shared_experts": 1, "first_k_dense_replace": 0, "routed_scaling_factor": 16.0,
        "rope_parameters": _YARN}),
}


def relative_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return ((ours - ref).abs().max() / ref.abs().max()).item()


@pytest.fixture(scope="module", params=sorted(CASES))
def checkpoint(request, tmp_path_factory):
    config_cls, model_cls, extra = CASES[request.param]
    torch.manual_seed(0)
    reference = model_cls(config_cls(**_SIZES, **extra)).eval()
    with torch.no_grad():  # non-trivial norms and a real correction bias, so a dropped one shows
        for name, tensor in reference.state_dict().items():
            if name.endswith("norm.weight"):
                tensor.uniform_(0.5, 1.5)
            elif name.endswith("e_score_correction_bias"):
                tensor.normal_(0, 0.3)
    folder = tmp_path_factory.mktemp(request.param)
    reference.save_pretrained(folder)
    return reference, folder


def test_prefill_then_batched_decode_matches_transformers_for_rows_of_different_lengths(checkpoint):
    reference, folder = checkpoint
    ours, _, _ = load_model(folder, dtype="float32", max_batch_size=3, max_seq_len=64)
    generator = torch.Generator().manual_seed(1)
    prompt_lengths = [7, 12]
    rows = [torch.randint(0, VOCAB, (n + DECODE_STEPS,), generator=generator) for n in prompt_lengths]
    slots = torch.tensor([2, 0])  # not 0..B-1, to prove rows use their own slot

    with torch.no_grad():
        expected = [reference(row[None]).logits[0] for row in rows]
        for row, n, slot, want in zip(rows, prompt_lengths, slots, expected):
            got = ours(row[None, :n], torch.arange(n)[None], slot[None])[0]
            assert relative_error(got, want[:n]) <= TOLERANCE
        for step in range(DECODE_STEPS):  # both rows in one batch, each at its own position
            positions = torch.tensor([[n + step] for n in prompt_lengths])
            tokens = torch.stack([row[n + step] for row, n in zip(rows, prompt_lengths)])[:, None]
            got = ours(tokens, positions, slots)
            for b, n in enumerate(prompt_lengths):
                assert relative_error(got[b, 0], expected[b][n + step]) <= TOLERANCE, f"step {step} row {b}"


def test_single_row_decode_and_chunked_prefill_match_transformers(checkpoint):
    reference, folder = checkpoint
    ours, _, _ = load_model(folder, dtype="float32", max_batch_size=1, max_seq_len=64)
    row = torch.randint(0, VOCAB, (20,), generator=torch.Generator().manual_seed(2))
    slot = torch.tensor([0])
    with torch.no_grad():
        want = reference(row[None]).logits[0]
        first = ours(row[None, :6], torch.arange(6)[None], slot)[0]
        second = ours(row[None, 6:14], torch.arange(6, 14)[None], slot)[0]  # naive path over a cached prefix
        decoded = [ours(row[None, p:p + 1], torch.tensor([[p]]), slot)[0, 0] for p in range(14, 20)]
    assert relative_error(torch.cat([first, second]), want[:14]) <= TOLERANCE
    assert relative_error(torch.stack(decoded), want[14:]) <= TOLERANCE


@pytest.mark.parametrize("merged", [False, True], ids=["separate", "merged-projections"])
def test_sync_free_decode_path_matches_transformers(checkpoint, merged):
    """What a CUDA graph replays, run on the CPU: GEMV experts (decode, few pairs) and grouped-GEMM
    experts (the longer prefill), attention over a fixed number of cache positions (masked per row),
    rows at different positions in slots not 0..B-1; and, as a GPU load has them, q/kv_a and
    gate/up projections merged into one matrix each."""
    reference, folder = checkpoint
    ours, _, _ = load_model(folder, dtype="float32", max_batch_size=3, max_seq_len=64)
    if merged:
        ours.merge_projections()
    for module in ours.modules():
        if hasattr(module, "sync_free"):
            module.sync_free = True
    generator = torch.Generator().manual_seed(3)
    prompt_lengths = [5, 9]
    rows = [torch.randint(0, VOCAB, (n + DECODE_STEPS,), generator=generator) for n in prompt_lengths]
    slots = torch.tensor([1, 2])
    with torch.no_grad():
        expected = [reference(row[None]).logits[0] for row in rows]
        for row, n, slot in zip(rows, prompt_lengths, slots):
            ours(row[None, :n], torch.arange(n)[None], slot[None], num_keys=64)
        for step in range(DECODE_STEPS):
            positions = torch.tensor([[n + step] for n in prompt_lengths])
            tokens = torch.stack([row[n + step] for row, n in zip(rows, prompt_lengths)])[:, None]
            got = ours(tokens, positions, slots, num_keys=64)
            for b, n in enumerate(prompt_lengths):
                assert relative_error(got[b, 0], expected[b][n + step]) <= TOLERANCE, f"step {step} row {b}"


@pytest.mark.parametrize("path", ["grouped_experts", "gemv_experts"])
def test_sync_free_experts_equal_the_per_expert_loop(path):
    from model.layers import moe
    from model.layers.moe import looped_experts

    generator = torch.Generator().manual_seed(4)
    num_experts, dim, hidden, tokens, top_k = 8, 24, 16, 11, 3
    gate_up = torch.randn(num_experts, 2 * hidden, dim, generator=generator)
    down = torch.randn(num_experts, dim, hidden, generator=generator)
    x = torch.randn(tokens, dim, generator=generator)
    # Experts 0 and 5 get no token: empty groups must contribute nothing and shift nothing.
    expert_ids = torch.stack([torch.randperm(6, generator=generator)[:top_k] + 1 for _ in range(tokens)])
    expert_ids[expert_ids == 5] = 7
    weights = torch.rand(tokens, top_k, generator=generator)
    want = looped_experts(x, weights, expert_ids, gate_up, down)
    got = getattr(moe, path)(x, weights, expert_ids, gate_up, down)
    assert relative_error(got, want) <= 1e-5
    slow = sum(weights[:, k, None] * torch.stack([
        F.linear(F.silu(F.linear(x[t], gate_up[e, :hidden])) * F.linear(x[t], gate_up[e, hidden:]), down[e])
        for t, e in enumerate(expert_ids[:, k].tolist())]) for k in range(top_k))
    assert relative_error(got, slow) <= 1e-5


def test_config_maps_routing_and_rope_fields(checkpoint):
    _, folder = checkpoint
    _, _, config = load_model(folder, dtype="float32", max_batch_size=1, max_seq_len=8)
    if config.model_type == "deepseek_v3":
        assert (config.topk_method, config.scoring_func) == ("noaux_tc", "sigmoid")
    else:
        assert config.scoring_func == "softmax" and config.topk_method in ("greedy", "group_limited_greedy")
    assert config.rope_type in ("default", "yarn")
    assert config.is_moe_layer(config.num_layers - 1)
    assert not any(config.is_moe_layer(i) for i in range(config.first_k_dense_replace))


@pytest.mark.parametrize("merged", [False, True], ids=["separate", "merged-projections"])
def test_saved_tensors_reproduce_the_checkpoint_names_and_values(checkpoint, merged):
    _, folder = checkpoint
    ours, _, _ = load_model(folder, dtype="float32", max_batch_size=1, max_seq_len=8)
    if merged:
        ours.merge_projections()
    saved = ours.checkpoint_tensors()
    original = dict(iter_safetensors(folder))
    if ours.config.tie_word_embeddings:
        original.pop("lm_head.weight", None)
    assert saved.keys() == original.keys()
    assert all(torch.equal(saved[name], original[name]) for name in original)


def test_r1_chat_template_starts_the_assistant_turn_with_think(models_dir):
    tokenizer = transformers.AutoTokenizer.from_pretrained(models_dir / "tokenizers" / "deepseek-r1")
    text = tokenizer.apply_chat_template([{"role": "user", "content": "什么是知库?"}], tokenize=False,
                                         add_generation_prompt=True)
    assert text.endswith("<｜Assistant｜><think>\n")
    assert "<｜User｜>什么是知库?" in text


# The published config.json files of DeepSeek-V3 (FP8) and DeepSeek-V2-Lite, abridged to what we read.
_PUBLISHED_YARN = {"beta_fast": 32, "beta_slow": 1, "factor": 40, "original_max_position_embeddings": 4096,
                   "type": "yarn"}
PUBLISHED_CONFIGS = {
    "DeepSeek-V3": {
        "architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3", "vocab_size": 129280,
        "hidden_size": 7168, "intermediate_size": 18432, "moe_intermediate_size": 2048,
        "num_hidden_layers": 61,
        "num_attention_heads": 128, "num_key_value_heads": 128, "q_lora_rank": 1536, "kv_lora_rank": 512,
        "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128, "n_routed_experts": 256,
        "n_shared_experts": 1, "num_experts_per_tok": 8, "n_group": 8, "topk_group": 4,
        "topk_method": "noaux_tc",
        "scoring_func": "sigmoid", "norm_topk_prob": True, "routed_scaling_factor": 2.5,
        "first_k_dense_replace": 3,
        "moe_layer_freq": 1, "num_nextn_predict_layers": 1, "max_position_embeddings": 163840,
        "rope_theta": 10000,
        "rope_scaling": _PUBLISHED_YARN | {"mscale": 1.0, "mscale_all_dim": 1.0}, "rms_norm_eps": 1e-06,
        "tie_word_embeddings": False, "hidden_act": "silu",
        "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                                "weight_block_size": [128, 128]}},
    "DeepSeek-V2-Lite": {
        "architectures": ["DeepseekV2ForCausalLM"], "model_type": "deepseek_v2", "vocab_size": 102400,
        "hidden_size": 2048, "intermediate_size": 10944, "moe_intermediate_size": 1408,
        "num_hidden_layers": 27,
        "num_attention_heads": 16, "num_key_value_heads": 16, "q_lora_rank": None, "kv_lora_rank": 512,
        "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128, "n_routed_experts": 64,
        "n_shared_experts": 2, "num_experts_per_tok": 6, "n_group": 1, "topk_group": 1,
        "topk_method": "greedy",
        "scoring_func": "softmax", "norm_topk_prob": False, "routed_scaling_factor": 1.0,
        "first_k_dense_replace": 1,
        "moe_layer_freq": 1, "max_position_embeddings": 163840, "rope_theta": 10000,
        "rope_scaling": _PUBLISHED_YARN | {"mscale": 0.707, "mscale_all_dim": 0.707}, "rms_norm_eps": 1e-06,
        "tie_word_embeddings": False, "hidden_act": "silu"},
}


@pytest.mark.parametrize("name", sorted(PUBLISHED_CONFIGS))
def test_published_configs_give_transformers_yarn_frequencies_and_softmax_scale(name):
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import yarn_apply_mscale

    hf_dict = PUBLISHED_CONFIGS[name]
    config = DeepseekConfig.from_hf(hf_dict)
    config_cls = {"deepseek_v3": transformers.DeepseekV3Config, "deepseek_v2": transformers.DeepseekV2Config}
    hf_fields = {k: v for k, v in hf_dict.items() if k != "quantization_config"}
    reference = config_cls[config.model_type](**hf_fields)
    want_inv_freq, want_attention_factor = ROPE_INIT_FUNCTIONS["yarn"](reference)
    want_scale = yarn_apply_mscale(reference.rope_parameters, reference.qk_head_dim ** -0.5)

    inv_freq, attention_factor, softmax_scale = rope_parameters(config)
    assert torch.equal(inv_freq, want_inv_freq)
    assert attention_factor == pytest.approx(want_attention_factor, rel=1e-12)
    assert softmax_scale == pytest.approx(want_scale, rel=1e-12)
    assert config.q_lora_rank == hf_dict["q_lora_rank"] and config.num_nextn_predict_layers in (0, 1)
