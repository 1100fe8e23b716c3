"""Our dense qwen2/llama models give transformers' logits (float32) on tiny random checkpoints."""

from __future__ import annotations

import pytest
import torch
import transformers

from model.loader import iter_safetensors, load_model

TOLERANCE = 1e-4  # max|ours - ref| / max|ref|
DECODE_STEPS = 8
VOCAB = 256

CASES = {
    "qwen2-untied": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM, {"tie_word_embeddings": False}),
    "qwen2-tied": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM, {"tie_word_embeddings": True}),
    "llama-untied-biases": (transformers.LlamaConfig, transformers.LlamaForCausalLM,
                            {"tie_word_embeddings": False, "attention_bias": True, "mlp_bias": True}),
    "llama3-rope-tied-sharded": (transformers.LlamaConfig, transformers.LlamaForCausalLM, {
        "tie_word_embeddings": True, "max_position_embeddings": 16384,
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 8192}}),
}


def relative_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return ((ours - ref).abs().max() / ref.abs().max()).item()


@pytest.fixture(scope="module", params=sorted(CASES))
def checkpoint(request, tmp_path_factory):
    config_cls, model_cls, extra = CASES[request.param]
    torch.manual_seed(0)
    config = config_cls(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, rope_theta=10000.0, **extra)
    reference = model_cls(config).eval()
    with torch.no_grad():  # random biases, so a dropped bias shows up in the logits
        for name, param in reference.named_parameters():
            if name.endswith("bias"):
                param.normal_(0, 0.5)
    folder = tmp_path_factory.mktemp(request.param)
    # One case is saved in shards (with the index json) to cover the sharded-folder path.
    reference.save_pretrained(folder, max_shard_size="40KB" if "sharded" in request.param else "1GB")
    return reference, folder


def test_prefill_then_decode_matches_transformers_for_rows_of_different_lengths(checkpoint):
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
        for step in range(DECODE_STEPS):
            positions = torch.tensor([[n + step] for n in prompt_lengths])
            tokens = torch.stack([row[n + step] for row, n in zip(rows, prompt_lengths)])[:, None]
            got = ours(tokens, positions, slots)[:, 0]
            want = torch.stack([w[n + step] for w, n in zip(expected, prompt_lengths)])
            assert relative_error(got, want) <= TOLERANCE, f"decode step {step}"


def test_batched_prefill_equals_transformers_and_reset_forgets(checkpoint):
    reference, folder = checkpoint
    ours, _, _ = load_model(folder, dtype="float32", max_batch_size=2, max_seq_len=32)
    tokens = torch.randint(0, VOCAB, (2, 9), generator=torch.Generator().manual_seed(2))
    positions = torch.arange(9).expand(2, -1)
    with torch.no_grad():
        want = reference(tokens).logits
        assert relative_error(ours(tokens, positions, torch.arange(2)), want) <= TOLERANCE
        ours.reset_cache()
        # After a reset, a decode-like call at position 0 sees only itself.
        first = ours(tokens[:, :1], positions[:, :1], torch.arange(2))
        assert relative_error(first, want[:, :1]) <= TOLERANCE


def test_checkpoint_with_an_unknown_tensor_is_refused(checkpoint, tmp_path):
    from safetensors.torch import save_file

    _, folder = checkpoint
    tensors = {name: tensor.clone() for name, tensor in iter_safetensors(folder)}
    tensors["model.layers.0.mlp.extra_proj.weight"] = torch.zeros(2, 2)
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    save_file(tensors, tmp_path / "model.safetensors")
    with pytest.raises(KeyError, match="extra_proj"):
        load_model(tmp_path, max_seq_len=16)


def test_last_only_gives_the_last_positions_logits(checkpoint):
    # What generation asks for after a prefill: the LM head on the last position only.
    reference, folder = checkpoint
    ours, _, _ = load_model(folder, dtype="float32", max_batch_size=2, max_seq_len=32)
    tokens = torch.randint(0, VOCAB, (2, 9), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        want = reference(tokens).logits[:, -1:]
        got = ours(tokens, torch.arange(9).expand(2, -1), torch.arange(2), last_only=True)
    assert got.shape == (2, 1, VOCAB)
    assert relative_error(got, want) <= TOLERANCE
