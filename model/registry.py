"""HF `architectures[0]` -> (model class, config class), imported lazily so one family's code never loads another's."""

from __future__ import annotations

import importlib

# architecture -> ("module:Class" of the model, "module:Class" of its config)
_ARCHITECTURES = {
    "Qwen2ForCausalLM": ("model.models.qwen2:Qwen2ForCausalLM", "model.config.dense:DenseConfig"),
    "LlamaForCausalLM": ("model.models.llama:LlamaForCausalLM", "model.config.dense:DenseConfig"),
    "DeepseekV3ForCausalLM": ("model.models.deepseek_v3:DeepseekV3ForCausalLM", "model.config.deepseek:DeepseekConfig"),
    "DeepseekV2ForCausalLM": ("model.models.deepseek_v3:DeepseekV3ForCausalLM", "model.config.deepseek:DeepseekConfig"),
}


class UnsupportedArchitectureError(ValueError):
    pass


def _import(target: str):
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def resolve(architecture: str) -> tuple[type, type]:
    """(model class, config class) for an HF architecture name."""
    if architecture not in _ARCHITECTURES:
        raise UnsupportedArchitectureError(
            f"architecture {architecture!r} is not supported; known: {sorted(_ARCHITECTURES)}")
    model_target, config_target = _ARCHITECTURES[architecture]
    return _import(model_target), _import(config_target)
