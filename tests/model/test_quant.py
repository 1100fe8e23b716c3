"""Weight-only int8/int4: error against the float model within stated bounds; saved folders reload exactly."""

from __future__ import annotations

import json

import pytest
import torch
import transformers

from model.loader import ModelLoadError, load_model
from model.quant import QuantConfig, quantize_int4, quantize_int8, save_quantized

# Relative logit error (max|q - f| / max|f|) of whole-model logits on a random-weight model; the
# per-weight error bounds are what the schemes guarantee by construction.
MODEL_TOLERANCE = {"int8": 0.03, "int4": 0.15}


def relative_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return ((ours - ref).abs().max() / ref.abs().max()).item()


def test_int8_rounds_each_weight_to_half_a_step_of_its_row_scale():
    weight = torch.randn(48, 96)
    q, scales = quantize_int8(weight)
    assert q.dtype == torch.int8
    assert ((q.float() * scales[:, None] - weight).abs() <= scales[:, None] / 2 + 1e-6).all()


def test_int4_groups_span_min_to_max_and_round_to_half_a_step():
    weight = torch.randn(32, 128)
    q, scales_and_zeros = quantize_int4(weight, group_size=32)
    assert int(q.min()) >= 0 and int(q.max()) <= 15
    scales, zeros = scales_and_zeros[..., 0].T, scales_and_zeros[..., 1].T  # (N, K/g)
    restored = ((q.float() - 8).reshape(32, 4, 32) * scales[..., None] + zeros[..., None]).reshape(32, 128)
    step = scales.repeat_interleave(32, dim=1)
    assert ((restored - weight).abs() <= step / 2 + 1e-5).all()


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    torch.manual_seed(0)
    config = transformers.Qwen2Config(vocab_size=256, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    folder = tmp_path_factory.mktemp("tiny-qwen2")
    transformers.Qwen2ForCausalLM(config).save_pretrained(folder)
    return folder


def _logits(model, tokens: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        model.reset_cache()
        return model(tokens, torch.arange(tokens.shape[1]).expand(tokens.shape[0], -1),
                     torch.arange(tokens.shape[0]))


TOKENS = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(5))


@pytest.mark.parametrize("scheme", ["int8", "int4"])
def test_quantized_logits_stay_close_to_float(tiny_folder, scheme):
    reference, _, _ = load_model(tiny_folder, dtype="float32", max_batch_size=2, max_seq_len=32)
    quantized, _, _ = load_model(tiny_folder, dtype="float32", quant=scheme, max_batch_size=2, max_seq_len=32)
    assert relative_error(_logits(quantized, TOKENS), _logits(reference, TOKENS)) <= MODEL_TOLERANCE[scheme]


@pytest.mark.parametrize("scheme", ["int8", "int4"])
def test_saved_quantized_folder_reloads_to_identical_logits(tiny_folder, tmp_path, scheme):
    model, _, _ = load_model(tiny_folder, dtype="bfloat16", quant=scheme, max_batch_size=2, max_seq_len=32)
    hf_config = json.loads((tiny_folder / "config.json").read_text())
    save_quantized(model, tmp_path, config=QuantConfig(scheme), hf_config=hf_config)

    reloaded, _, _ = load_model(tmp_path, dtype="bfloat16", max_batch_size=2, max_seq_len=32)
    assert torch.equal(_logits(reloaded, TOKENS), _logits(model, TOKENS))
    other = "int4" if scheme == "int8" else "int8"
    with pytest.raises(ModelLoadError, match=f"saved as {scheme}"):
        load_model(tmp_path, quant=other, max_seq_len=32)


@pytest.mark.slow
def test_int4_of_the_real_model_keeps_its_greedy_choices(models_dir):
    # The 0.5B GGUF is mostly Q5_0/Q8_0: int4 re-quantizes it, the worst case of our int4 path.
    path = models_dir / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
    torch.set_num_threads(2)
    reference, tokenizer, _ = load_model(path, dtype="bfloat16", max_seq_len=128)
    tokens = torch.tensor([tokenizer.encode("The quick brown fox jumps over the lazy dog. 北京是中国的首都。")])
    want = _logits(reference, tokens)
    del reference
    quantized, _, _ = load_model(path, dtype="bfloat16", quant="int4", max_seq_len=128)
    got = _logits(quantized, tokens)
    agreement = (got.argmax(-1) == want.argmax(-1)).float().mean().item()
    assert agreement >= 0.8
    assert relative_error(got, want) <= 0.25


def test_int4_prefill_path_matches_the_int4_kernel(monkeypatch):
    # On AMX CPUs long inputs run through an expanded bf16 weight instead of the int4 kernel: same
    # weights, same result (forced on here, whatever this CPU has).
    from model.layers import linear
    from model.layers.linear import DEQUANTIZE_FROM_ROWS, Int4WeightOnlyLinear

    monkeypatch.setattr(linear, "EXPAND_FOR_LONG_INPUTS", True)
    torch.manual_seed(0)
    layer = Int4WeightOnlyLinear(256, 128, True, torch.bfloat16, group_size=64)
    layer.load_tensor("weight", torch.randn(128, 256) * 0.05)
    layer.load_tensor("bias", torch.randn(128))
    x = torch.randn(DEQUANTIZE_FROM_ROWS, 256, dtype=torch.bfloat16)
    long_path = layer(x)
    kernel_rows = torch.cat([layer(x[i : i + 64]) for i in range(0, DEQUANTIZE_FROM_ROWS, 64)])
    assert torch.allclose(long_path.float(), kernel_rows.float(), rtol=2e-2, atol=2e-2)


def test_int4_weights_packed_in_row_blocks_read_back_unchanged():
    # Large matrices (the LM head) are converted to the kernel layout a block of rows at a time.
    from model.layers.linear import _PACK_ROWS, Int4WeightOnlyLinear

    rows = _PACK_ROWS + 64
    q = torch.randint(0, 16, (rows, 64), generator=torch.Generator().manual_seed(6), dtype=torch.uint8)
    layer = Int4WeightOnlyLinear(64, rows, False, torch.bfloat16, group_size=32)
    layer.load_int4_values(q)
    assert torch.equal(layer.packed, torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.to(torch.int32), 1))
    assert torch.equal(layer.int4_values(), q)
