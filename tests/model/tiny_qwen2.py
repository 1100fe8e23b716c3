"""A tiny random Qwen2 checkpoint saved with transformers' `save_pretrained`, beside a real tokenizer."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM


def save_tiny_qwen2(folder: Path, tokenizer_dir: Path, *, vocab_size: int, max_seq_len: int) -> Path:
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tokenizer_dir / name, folder / name)
    config = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_seq_len,
        # Large random weights give peaked, varied logits, so greedy outputs differ per prompt
        # instead of repeating one token (which would make "batched == alone" trivially true).
        initializer_range=0.3,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).save_pretrained(folder)
    return folder
