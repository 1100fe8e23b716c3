"""An FP8 block-scaled checkpoint (DeepSeek's published format) loads to the same model as its
dequantized bf16 twin."""

from __future__ import annotations

import json

import pytest
import torch
import transformers
from safetensors.torch import save_file

from model.config.deepseek import DeepseekConfig
from model.fp8 import FP8CheckpointError, dequant_fp8_blocks, dequantize_fp8_checkpoint, fp8_block_size
from model.loader import iter_safetensors, load_model
from model.models.deepseek_v3 import DeepseekV3ForCausalLM
from model.runtime import Runtime

BLOCK = 128
FP8_MAX = torch.finfo(torch.float8_e4m3fn).max
QUANTIZATION_CONFIG = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                       "weight_block_size": [BLOCK, BLOCK]}


def quantize_fp8_blocks(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """DeepSeek's scheme: each 128x128 tile scaled so its largest magnitude maps to the float8 maximum."""
    rows, cols = weight.shape
    padded = torch.zeros(-(-rows // BLOCK) * BLOCK, -(-cols // BLOCK) * BLOCK)
    padded[:rows, :cols] = weight.float()
    tiles = padded.unflatten(0, (-1, BLOCK)).unflatten(2, (-1, BLOCK))  # [R, 128, C, 128]
    scale_inv = tiles.abs().amax(dim=(1, 3)).clamp(min=1e-12) / FP8_MAX
    quantized = (tiles / scale_inv[:, None, :, None]).flatten(2).flatten(0, 1)[:rows, :cols]
    return quantized.to(torch.float8_e4m3fn), scale_inv


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """(fp8 folder, bf16 twin folder) of one random DeepSeek-V3 model with partial edge tiles."""
    torch.manual_seed(0)
    config = transformers.DeepseekV3Config(
        vocab_size=300, hidden_size=256, intermediate_size=320, moe_intermediate_size=160,
        num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, q_lora_rank=192, kv_lora_rank=144, qk_nope_head_dim=32,
        qk_rope_head_dim=16, v_head_dim=32, n_routed_experts=4, num_experts_per_tok=2,
        n_group=2, topk_group=1,
        first_k_dense_replace=1, max_position_embeddings=64, dtype="bfloat16")
    source = tmp_path_factory.mktemp("source")  # save_pretrained writes per-expert names, as DeepSeek does
    transformers.DeepseekV3ForCausalLM(config).to(torch.bfloat16).save_pretrained(source)
    fp8_tensors, twin_tensors = {}, {}
    for name, tensor in iter_safetensors(source):
        # DeepSeek quantizes the linear layers only: not embeddings, lm_head, norms or the router.
        if name.endswith(("_proj.weight", "_mqa.weight")):
            quantized, scale_inv = quantize_fp8_blocks(tensor)
            fp8_tensors[name], fp8_tensors[f"{name}_scale_inv"] = quantized, scale_inv
            twin_tensors[name] = dequant_fp8_blocks(quantized, scale_inv, BLOCK).to(torch.bfloat16)
        else:
            fp8_tensors[name] = twin_tensors[name] = tensor.contiguous()
    hf_config = config.to_dict() | {"architectures": ["DeepseekV3ForCausalLM"]}
    folders = []
    for label, tensors, extra in (("fp8", fp8_tensors, {"quantization_config": QUANTIZATION_CONFIG}),
                                  ("bf16", twin_tensors, {})):
        folder = tmp_path_factory.mktemp(label)
        save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
        (folder / "config.json").write_text(json.dumps(hf_config | extra))
        folders.append(folder)
    return tuple(folders)


def test_fp8_checkpoint_gives_the_logits_of_its_dequantized_bf16_twin(checkpoints):
    fp8_folder, twin_folder = checkpoints
    hf_config = json.loads((fp8_folder / "config.json").read_text())
    runtime = Runtime(dtype=torch.bfloat16, device="cpu", max_batch_size=1, max_seq_len=32)
    ours = DeepseekV3ForCausalLM(DeepseekConfig.from_hf(hf_config), runtime)
    with torch.inference_mode():
        ours.load_weights(dequantize_fp8_checkpoint(iter_safetensors(fp8_folder), fp8_block_size(hf_config)))
    twin, _, _ = load_model(twin_folder, dtype="bfloat16", max_batch_size=1, max_seq_len=32)

    tokens = torch.randint(0, 300, (1, 10), generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        got = ours(tokens, torch.arange(10)[None], torch.tensor([0]))
        want = twin(tokens, torch.arange(10)[None], torch.tensor([0]))
    assert torch.equal(got, want)


def test_block_dequantization_recovers_the_weight_within_float8_precision():
    weight = torch.randn(300, 200) * torch.logspace(-3, 1, 200)  # columns of very different magnitudes
    quantized, scale_inv = quantize_fp8_blocks(weight)
    assert scale_inv.shape == (3, 2)  # partial tiles at both edges
    restored = dequant_fp8_blocks(quantized, scale_inv, BLOCK)
    # e4m3 keeps 3 mantissa bits: relative error <= 2^-4 for values in its normal range.
    tile_max = scale_inv.repeat_interleave(BLOCK, 0)[:300].repeat_interleave(BLOCK, 1)[:, :200] * FP8_MAX
    assert ((restored - weight).abs() <= weight.abs() / 16 + tile_max * 2.0 ** -9).all()


def test_fp8_weight_without_its_scale_is_an_error():
    weight = torch.zeros(4, 4, dtype=torch.float8_e4m3fn)
    with pytest.raises(FP8CheckpointError, match="without scales"):
        list(dequantize_fp8_checkpoint([("layer.weight", weight)]))
    with pytest.raises(FP8CheckpointError, match="does not tile"):
        dequant_fp8_blocks(weight, torch.ones(2, 2), BLOCK)


def test_config_without_fp8_quantization_has_no_block_size():
    assert fp8_block_size({}) is None
    assert fp8_block_size({"quantization_config": QUANTIZATION_CONFIG}) == BLOCK
