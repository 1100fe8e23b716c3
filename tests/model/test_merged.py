"""Merged projections (model/layers/merged.py) and the CPU path of the router's float32 GEMV
(model/kernels/gemv.py); their use inside the model is covered by test_deepseek_parity."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from model.kernels.gemv import linear_float32_partials
from model.layers.linear import Int8WeightOnlyLinear, Linear
from model.layers.merged import merge_linears


def _linear(out_features: int, in_features: int, dtype: torch.dtype = torch.float32) -> Linear:
    layer = Linear(in_features, out_features, False, dtype)
    layer.load_tensor("weight", torch.randn(out_features, in_features))
    return layer


def test_merged_weight_is_the_layers_rows_and_the_layers_stay_views_of_it():
    torch.manual_seed(0)
    first, second = _linear(12, 8), _linear(5, 8)
    x = torch.randn(3, 8)
    want = torch.cat([first(x), second(x)], dim=-1)
    merged = merge_linears(first, second)
    assert torch.equal(F.linear(x, merged), want)
    second.load_tensor("weight", torch.ones(5, 8))  # a load after merging lands in the merged tensor
    assert torch.equal(merged[12:], torch.ones(5, 8))
    assert torch.equal(first.checkpoint_tensors()["weight"], merged[:12])


def test_merge_refuses_quantized_biased_or_mismatched_layers():
    torch.manual_seed(0)
    quantized = Int8WeightOnlyLinear(8, 4, False, torch.float32)
    quantized.load_tensor("weight", torch.randn(4, 8))
    biased = Linear(8, 4, True, torch.float32)
    for layers in ((_linear(4, 8), quantized), (_linear(4, 8), biased), (_linear(4, 8), _linear(4, 6)),
                   (_linear(4, 8), _linear(4, 8, torch.bfloat16))):
        before = [layer.weight if hasattr(layer, "weight") else None for layer in layers]
        assert merge_linears(*layers) is None
        assert [layer.weight if hasattr(layer, "weight") else None for layer in layers] == before


def test_float32_output_of_bf16_operands_is_the_float32_product():
    """The router's logits: bf16 activations and weights, float32 products and sums on every path."""
    torch.manual_seed(0)
    x, weight = torch.randn(2, 16, dtype=torch.bfloat16), torch.randn(6, 16, dtype=torch.bfloat16)
    got = linear_float32_partials(x, weight).sum(dim=0)
    assert got.dtype == torch.float32
    assert torch.equal(got, F.linear(x.float(), weight.float()))
