"""A tiny random cross-encoder (2-layer BERT, one score per pair, a WordPiece vocabulary of a few
words) saved the way an admin provides a reranker: config, tokenizer and safetensors weights. No
reranker weights ship (../shared/MODELS.md), so the code path is tested with this one."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "备", "份", "数", "据", "目", "录", "保", "修", "期",
         "的", "为", "年", "一", "两", "三", "多", "久", "printer", "warranty", "backup", "data", "years", "two",
         "the", "is", "of", "what", "?"]


def build_tiny_cross_encoder(folder: Path, *, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512, num_labels=1,
                        # Far from the 0.02 default: tiny random weights would score every pair alike.
                        initializer_range=0.5)
    folder.mkdir(parents=True, exist_ok=True)
    BertForSequenceClassification(config).save_pretrained(folder, safe_serialization=True)
    BertTokenizer(vocab={token: i for i, token in enumerate(VOCAB)}).save_pretrained(folder)
    return folder
