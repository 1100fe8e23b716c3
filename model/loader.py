"""From a path on disk to a ready model: HF safetensors folders (single or sharded) and GGUF files.

`load_model` is the one entry point; `model.load` wraps its result in an `Engine`.
"""

from __future__ import annotations

import ctypes
import json
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import safe_open

from model.fp8 import dequantize_fp8_checkpoint, fp8_block_size
from model.gguf_reader import GGUFModel
from model.quant import QuantConfig, read_quant_config, swap_linear
from model.registry import resolve
from model.runtime import Runtime

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")


class ModelLoadError(ValueError):
    pass


def safetensors_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.exists():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [folder / shard for shard in shards]
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ModelLoadError(f"no *.safetensors in {folder}")
    return files


def iter_safetensors(folder: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor of a folder's checkpoint, shard by shard, read lazily (memory-mapped)."""
    for path in safetensors_files(Path(folder)):
        with safe_open(str(path), framework="pt") as shard:
            for name in shard.keys():
                yield name, shard.get_tensor(name)


def load_model(path: str | Path, *, dtype: str = "float32", quant: str | None = None, device: str = "cpu",
               max_batch_size: int = 1, max_seq_len: int = 4096, group_size: int = 32):
    """(model, tokenizer or None, config) for an HF folder (FP8 block-scaled ones dequantized) or a .gguf file.

    quant="int8"/"int4" quantizes each weight as it is loaded; a folder saved quantized
    (quantization.json) loads in its own scheme, and asking for another one is an error.
    """
    path = Path(path)
    if dtype not in DTYPES:
        raise ModelLoadError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    if device != "cpu" and quant is not None:
        raise ModelLoadError(f"int8/int4 kernels run on the CPU only; got quant={quant!r} on {device!r}")
    torch_dtype = DTYPES[dtype]
    if path.suffix == ".gguf":
        source = GGUFModel(path)
        hf_config, saved_quant = source.hf_config(), None
        tokenizer = source.tokenizer()
    elif (path / "config.json").is_file():
        hf_config, saved_quant = json.loads((path / "config.json").read_text()), read_quant_config(path)
        weights, source = iter_safetensors(path), None
        block = fp8_block_size(hf_config)
        if block is not None:
            weights = dequantize_fp8_checkpoint(weights, block)
        tokenizer = _folder_tokenizer(path)
    else:
        raise ModelLoadError(f"{path} is neither a model folder (with config.json) nor a .gguf file")

    quant_config = _choose_quant(quant, group_size, saved_quant)
    if path.suffix == ".gguf":
        int4_group_size = quant_config.group_size if quant_config and quant_config.scheme == "int4" else None
        weights = source.iter_weights(torch_dtype, int4_group_size=int4_group_size)
    model_cls, config_cls = resolve(hf_config["architectures"][0])
    config = config_cls.from_hf(hf_config)
    # A cache longer than the model's trained context would only waste memory.
    runtime = Runtime(dtype=torch_dtype, device=device, max_batch_size=max_batch_size,
                      max_seq_len=min(max_seq_len, config.max_position_embeddings))
    with torch.device(device):
        model = model_cls(config, runtime)
    if quant_config is not None:
        swap_linear(model, quant_config)
    with torch.inference_mode():
        model.load_weights(weights)
    del weights, source
    _return_freed_memory()
    return model.eval(), tokenizer, config


def _return_freed_memory() -> None:
    # Parsing GGUF metadata and dequantizing leave hundreds of MB of freed small blocks in glibc's
    # heap, which it keeps mapped; trimming hands them back so the resident size is the model's.
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _choose_quant(requested: str | None, group_size: int, saved: QuantConfig | None) -> QuantConfig | None:
    if saved is not None:
        if requested is not None and requested != saved.scheme:
            raise ModelLoadError(f"the folder is saved as {saved.scheme}; cannot load it as {requested}")
        return saved
    return None if requested is None else QuantConfig(requested, group_size)


def _folder_tokenizer(folder: Path):
    if not any((folder / name).exists() for name in _TOKENIZER_FILES):
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder))
