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


def _force_quantized_path(monkeypatch, path: str) -> None:
    """Every int4/int8 layer runs `path` ("kernel" or "expanded"), whatever this CPU would pick and
    however few rows the input has (normally only long inputs expand, on CPUs with a bf16 dot product)."""
    from model.layers import linear

    monkeypatch.setattr(linear, "expands_quantized", lambda rows: path == "expanded")


@pytest.mark.parametrize("scheme", ["int8-kernel", "int8-expanded", "int4-kernel", "int4-expanded"])
def test_quantized_logits_stay_close_to_float(tiny_folder, scheme, monkeypatch):
    scheme, _, path = scheme.partition("-")
    _force_quantized_path(monkeypatch, path)
    reference, _, _ = load_model(tiny_folder, dtype="float32", max_batch_size=2, max_seq_len=32)
    quantized, _, _ = load_model(tiny_folder, dtype="float32", quant=scheme, max_batch_size=2, max_seq_len=32)
    assert relative_error(_logits(quantized, TOKENS), _logits(reference, TOKENS)) <= MODEL_TOLERANCE[scheme]


@pytest.mark.parametrize("scheme", ["int8", "int4"])
def test_kernel_and_expanded_paths_give_the_same_logits(tiny_folder, scheme, monkeypatch):
    # Same quantized weights either way; only the bf16 rounding of the expanded weight and the order
    # of the sums differ. Measured 3.6e-3 (int8) and 7.3e-3 (int4), against each scheme's own error
    # from float of 7.9e-3 and 8.6e-2 on this model: bf16 noise, far below a wrong weight or scale.
    quantized, _, _ = load_model(tiny_folder, dtype="float32", quant=scheme, max_batch_size=2, max_seq_len=32)
    by_path = {}
    for path in ("kernel", "expanded"):
        _force_quantized_path(monkeypatch, path)
        by_path[path] = _logits(quantized, TOKENS)
    assert relative_error(by_path["expanded"], by_path["kernel"]) <= {"int8": 6e-3, "int4": 1.5e-2}[scheme]


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


@pytest.mark.parametrize("scheme", ["int8", "int4"])
def test_expanded_gemm_matches_the_kernel(scheme, monkeypatch):
    # A layer wider than one expansion slice (as the large projections are), with a bias, and as many
    # rows as from which long inputs expand: same output either path.
    from model.layers import linear
    from model.layers.linear import EXPAND_FROM_ROWS, Int4WeightOnlyLinear, Int8WeightOnlyLinear

    monkeypatch.setattr(linear, "_EXPAND_MAX_ELEMENTS", 256 * 128)  # 128-row slices: 3 of them here
    torch.manual_seed(0)
    layer = (Int4WeightOnlyLinear(256, 320, True, torch.bfloat16, group_size=64) if scheme == "int4"
             else Int8WeightOnlyLinear(256, 320, True, torch.bfloat16))
    layer.load_tensor("weight", torch.randn(320, 256) * 0.05)
    layer.load_tensor("bias", torch.randn(320))
    x = torch.randn(EXPAND_FROM_ROWS, 256, dtype=torch.bfloat16)
    outputs = {}
    for path in ("kernel", "expanded"):
        _force_quantized_path(monkeypatch, path)
        outputs[path] = layer(x).float()
    assert torch.allclose(outputs["expanded"], outputs["kernel"], rtol=2e-2, atol=2e-2)


def test_only_long_inputs_expand_and_only_on_cpus_with_a_bf16_dot_product():
    from model.layers.linear import EXPAND_FROM_ROWS, expands_quantized

    bf16_dot = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert not expands_quantized(EXPAND_FROM_ROWS - 1)  # decode batches always take the kernel
    assert expands_quantized(EXPAND_FROM_ROWS) == bf16_dot


def test_int4_weights_packed_in_row_blocks_read_back_unchanged():
    # Large matrices (the LM head) are converted to the kernel layout a block of rows at a time.
    from model.layers.linear import _PACK_ROWS, Int4WeightOnlyLinear

    rows = _PACK_ROWS + 64
    q = torch.randint(0, 16, (rows, 64), generator=torch.Generator().manual_seed(6), dtype=torch.uint8)
    layer = Int4WeightOnlyLinear(64, rows, False, torch.bfloat16, group_size=32)
    layer.load_int4_values(q)
    assert torch.equal(layer.packed, torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.to(torch.int32), 1))
    assert torch.equal(layer.int4_values(), q)


needs_native = pytest.mark.skipif(not __import__("model.native").native.SUPPORTED,
                                  reason="this CPU lacks AVX-512 with BF16: model/native is not used here")


@needs_native
def test_native_int4_expansion_rounds_the_exact_weight_once():
    from model.layers.linear import Int4WeightOnlyLinear

    torch.manual_seed(0)
    layer = Int4WeightOnlyLinear(256, 192, False, torch.bfloat16, group_size=64)
    layer.load_tensor("weight", torch.randn(192, 256) * 0.05)
    scales, zeros = (layer.scales_and_zeros[..., i].float().repeat_interleave(64, dim=0) for i in (0, 1))
    exact = (layer.int4_values().T.float() - 8) * scales + zeros  # [in, out]
    # Channels 64..191 only: a slice that starts inside the matrix, as the sliced GEMM asks for.
    expanded = layer.dequantized_transposed(slice(64, 192))
    assert expanded.dtype == torch.bfloat16 and expanded.shape == (256, 128)
    assert torch.allclose(expanded.float(), exact[:, 64:], rtol=2 ** -8, atol=1e-7)


@needs_native
def test_native_int8_expansion_equals_the_scaled_weight():
    from model.layers.linear import Int8WeightOnlyLinear

    torch.manual_seed(0)
    layer = Int8WeightOnlyLinear(128, 96, False, torch.bfloat16)
    layer.load_tensor("weight", torch.randn(96, 128))
    exact = layer.qweight.float() * layer.scales.float()[:, None]
    assert torch.equal(layer.dequantized(slice(32, 96)), exact[32:].to(torch.bfloat16))


@needs_native
@pytest.mark.parametrize("rows", [1, 3, 4])
def test_native_int4_gemv_equals_the_product_with_the_exact_weight(rows, monkeypatch):
    from model import native
    from model.layers import linear
    from model.layers.linear import Int4WeightOnlyLinear

    torch.manual_seed(0)
    layer = Int4WeightOnlyLinear(256, 320, False, torch.bfloat16, group_size=32)
    layer.load_tensor("weight", torch.randn(320, 256) * 0.05)
    scales, zeros = (layer.scales_and_zeros[..., i].double().repeat_interleave(32, dim=0) for i in (0, 1))
    exact = (layer.int4_values().T.double() - 8) * scales + zeros  # [in, out]
    x = torch.randn(rows, 256, dtype=torch.bfloat16)
    expected = x.double() @ exact
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)  # the GEMV runs for one torch thread
    y = layer.kernel_mm(x)
    assert y.dtype == torch.float32 and y.shape == (rows, 320)
    assert torch.allclose(y.double(), expected, rtol=1e-5, atol=1e-5)
    # Blocks 1..3 only: the rest of `out` is left as it was.
    out = torch.full((rows, 320), 7.0)
    native.gemv_int4(x.float(), layer.packed, layer.scales_and_zeros, 32, out, range(1, 4))
    assert torch.allclose(out[:, 64:256].double(), expected[:, 64:256], rtol=1e-5, atol=1e-5)
    assert (out[:, :64] == 7).all() and (out[:, 256:] == 7).all()
    # Past GEMV_MAX_ROWS torch's kernel runs: same product within its bf16 rounding.
    monkeypatch.setattr(linear.native, "GEMV_MAX_ROWS", 0)
    assert torch.allclose(layer.kernel_mm(x).double(), expected, rtol=2e-2, atol=2e-2)


def test_native_expansion_refuses_tensors_it_would_misread():
    from model import native

    blocks = torch.zeros(2, 64, 32, dtype=torch.uint8)
    out = torch.empty(64, 128, dtype=torch.bfloat16)
    strided = torch.zeros(1, 256, 2, dtype=torch.bfloat16)[:, ::2]
    with pytest.raises(ValueError, match="contiguous CPU torch.bfloat16"):
        native.expand_int4(blocks, strided, 0, 64, out)
    with pytest.raises(ValueError, match="shape"):
        native.expand_int8(torch.zeros(4, 64, dtype=torch.int8), torch.ones(3), torch.empty(4, 64, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match="out of range"):
        native.gemv_int4(torch.zeros(1, 64), torch.zeros(64, 32, dtype=torch.uint8),
                         torch.zeros(2, 64, 2, dtype=torch.bfloat16), 32, torch.empty(1, 64), range(0, 2))
