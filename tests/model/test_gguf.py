"""GGUF files load to the same logits as transformers gives for the same weights."""

from __future__ import annotations

import gguf
import numpy as np
import pytest
import torch
import transformers

from model import load
from model.gguf_reader import GGUFModel
from model.loader import load_model

SMALL_GGUF = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
TOLERANCE = 1e-4  # max|ours - ref| / max|ref|, float32, same dequantized weights
PROMPT = 'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n'


def relative_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return ((ours - ref).abs().max() / ref.abs().max()).item()


@pytest.fixture(scope="module")
def small_engine(models_dir):
    torch.set_num_threads(2)
    return load(models_dir / SMALL_GGUF, dtype="float32", max_batch_size=2, max_seq_len=128)


@pytest.mark.slow
def test_real_qwen2_gguf_matches_transformers_gguf_loader(models_dir, small_engine):
    # transformers dequantizes the same Q4_K/Q5_0/Q6_K/Q8_0/F32 tensors with the same gguf package.
    reference = transformers.AutoModelForCausalLM.from_pretrained(
        models_dir, gguf_file=SMALL_GGUF, dtype=torch.float32,
        quantization_config=transformers.GgufConfig(gguf_file=SMALL_GGUF, dequantize=True)).eval()
    tokens = torch.tensor([small_engine.tokenizer.encode(PROMPT)])
    with torch.inference_mode():
        want = reference(tokens).logits
    del reference
    small_engine.reset()
    got = small_engine.logits(tokens)
    assert relative_error(got, want) <= TOLERANCE
    assert torch.equal(got.argmax(-1), want.argmax(-1))


@pytest.mark.slow
def test_engine_prefill_then_decode_equals_one_prefill(small_engine):
    tokens = torch.tensor([small_engine.tokenizer.encode(PROMPT)])
    small_engine.reset()
    whole = small_engine.logits(tokens)
    small_engine.reset()
    split = 6
    parts = [small_engine.logits(tokens[:, :split])]
    parts += [small_engine.logits(tokens[:, i:i + 1], start_pos=i) for i in range(split, tokens.shape[1])]
    assert relative_error(torch.cat(parts, dim=1), whole) <= TOLERANCE


@pytest.mark.slow
def test_tokenizer_and_chat_template_come_from_the_gguf(small_engine):
    tokenizer = small_engine.tokenizer
    text = tokenizer.apply_chat_template([{"role": "user", "content": "你好"}], add_generation_prompt=True,
                                         tokenize=False)
    assert text.endswith("<|im_start|>assistant\n")
    assert tokenizer.decode(tokenizer.encode("北京 is the capital")) == "北京 is the capital"


def _llama_cpp_permute(weight: np.ndarray, num_heads: int) -> np.ndarray:
    """What llama.cpp's convert_hf_to_gguf does to Llama q/k rows (the layout our reader must undo)."""
    rows = weight.shape[0]
    return weight.reshape(num_heads, 2, rows // num_heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def test_llama_gguf_with_permuted_qk_and_f16_q8_tensors_matches_the_hf_model(tmp_path):
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)
    reference = transformers.LlamaForCausalLM(config).eval()
    path = tmp_path / "tiny-llama.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(2)
    writer.add_context_length(2048)
    writer.add_embedding_length(64)
    writer.add_feed_forward_length(128)
    writer.add_head_count(4)
    writer.add_head_count_kv(2)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    gguf_names = {v: k for k, v in _hf_to_gguf_names(2).items()}
    with torch.no_grad():
        state = {name: tensor.numpy() for name, tensor in reference.state_dict().items()}
        for hf, tensor in state.items():
            name = gguf_names[hf]
            if name.endswith(("attn_q.weight", "attn_k.weight")):
                tensor = _llama_cpp_permute(tensor, 4 if "attn_q" in name else 2)
            if name.endswith("ffn_up.weight"):  # a quantized tensor: the reference uses its dequantized values
                qtype = gguf.GGMLQuantizationType.Q8_0
                packed = gguf.quants.quantize(tensor, qtype)
                writer.add_tensor(name, packed, raw_dtype=qtype)
                state[hf][...] = gguf.quants.dequantize(packed, qtype)
            elif tensor.ndim == 2:
                writer.add_tensor(name, tensor.astype(np.float16))
                state[hf][...] = state[hf].astype(np.float16).astype(np.float32)
            else:
                writer.add_tensor(name, tensor)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    ours, tokenizer, _ = load_model(path, dtype="float32", max_seq_len=32)
    assert tokenizer is None  # this file carries no tokenizer
    tokens = torch.randint(0, 128, (1, 10), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = reference(tokens).logits
        got = ours(tokens, torch.arange(10)[None], torch.tensor([0]))
    assert relative_error(got, want) <= TOLERANCE


def _hf_to_gguf_names(num_layers: int) -> dict[str, str]:
    names = ["token_embd.weight", "output_norm.weight", "output.weight"]
    for i in range(num_layers):
        names += [f"blk.{i}.{part}.weight" for part in
                  ("attn_norm", "ffn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")]
    from model.gguf_reader import hf_name

    return {name: hf_name(name) for name in names}


def test_gguf_config_maps_metadata(models_dir):
    config = GGUFModel(models_dir / SMALL_GGUF).config()
    assert (config.model_type, config.num_layers, config.hidden_size) == ("qwen2", 24, 896)
    assert (config.num_heads, config.num_kv_heads, config.head_dim) == (14, 2, 64)
    assert config.qkv_bias and not config.o_bias and config.rope_theta == 1e6
