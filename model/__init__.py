"""Zhiku's own inference runtime. The stable API: `load(path, ...) -> Engine`."""

from __future__ import annotations

from pathlib import Path


def load(path: str | Path, dtype: str = "float32", quant: str | None = None, device: str = "cpu",
         max_batch_size: int = 1, max_seq_len: int = 4096, group_size: int = 32):
    """An `Engine` over the model at `path` (HF folder or .gguf), quantized at load if `quant` is set."""
    from model.engine import Engine
    from model.loader import ModelLoadError, load_model

    model, tokenizer, _config = load_model(path, dtype=dtype, quant=quant, device=device,
                                           max_batch_size=max_batch_size, max_seq_len=max_seq_len,
                                           group_size=group_size)
    if tokenizer is None:
        raise ModelLoadError(f"{path} has no tokenizer files; use model.loader.load_model for a bare checkpoint")
    return Engine(model, tokenizer, model.runtime)
