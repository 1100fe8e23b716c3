"""Projections of the same input read as one matrix: one GEMV launch where there were several.

At batch 1 on a GPU a small projection costs a kernel launch and a ramp-up more than its bytes
(docs/gpu.md, "Where a batch-1 step goes"), so MLA's q_proj (or q_a_proj) and kv_a_proj_with_mqa,
and an MLP's gate_proj and up_proj, are better one matrix each. The layers stay as the checkpoints
name them, for loading, saving, quantization and sharding; `merge_linears` only moves their
weights into one tensor and leaves each layer a view of its rows. Merge after loading and after
any sharding (which replaces the weights): `DeepseekV3ForCausalLM.merge_projections`.
"""

from __future__ import annotations

import torch
from torch import nn

from model.layers.linear import Linear


def merge_linears(*linears: nn.Module) -> torch.Tensor | None:
    """The layers' weights as one [sum of out_features, in_features] tensor, each layer's weight now
    a view of its rows; None, and nothing changed, unless all are bias-free float `Linear`s of one
    input size, dtype and device (a quantized layer keeps its own kernel)."""
    if any(type(layer) is not Linear or layer.bias is not None for layer in linears):
        return None
    weights = [layer.weight.data for layer in linears]
    if len({(w.shape[1], w.dtype, w.device) for w in weights}) != 1:
        return None
    merged = torch.cat(weights)
    for layer, rows in zip(linears, merged.split([w.shape[0] for w in weights]), strict=True):
        layer.weight = nn.Parameter(rows, requires_grad=False)
    return merged
