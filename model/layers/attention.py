"""Grouped-query attention over a static slot KV cache.

The cache holds `max_batch_size` slots x `max_seq_len` positions. Row b of a batch writes its new
keys/values at (slots[b], positions[b, t]) and attends to that slot's positions <= its own, so
prefill (T > 1) and decode (T = 1) are one code path and rows may sit at different positions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.config.dense import DenseConfig
from model.layers.linear import Linear
from model.layers.rope import apply_rope
from model.runtime import Runtime


def causal_slot_mask(positions: torch.Tensor, num_keys: int | None = None) -> torch.Tensor | None:
    """Bool [B, 1, T, L] (True = may attend) over cache positions 0..L-1, L = last position + 1.

    None when every query may see every cached position (a single decode row), the fast path.
    A given num_keys fixes L, and the mask is then always built on the device (no host sync).
    """
    if num_keys is None:
        num_keys = int(positions.max()) + 1
        if positions.shape == (1, 1):
            return None
    key_positions = torch.arange(num_keys, device=positions.device)
    return (key_positions[None, None, :] <= positions[:, :, None])[:, None]


class SlotCacheAttention(nn.Module):
    def __init__(self, config: DenseConfig, runtime: Runtime) -> None:
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = config.num_heads, config.num_kv_heads, config.head_dim
        dim, dtype = config.hidden_size, runtime.dtype
        self.q_proj = Linear(dim, self.num_heads * self.head_dim, config.qkv_bias, dtype)
        self.k_proj = Linear(dim, self.num_kv_heads * self.head_dim, config.qkv_bias, dtype)
        self.v_proj = Linear(dim, self.num_kv_heads * self.head_dim, config.qkv_bias, dtype)
        self.o_proj = Linear(self.num_heads * self.head_dim, dim, config.o_bias, dtype)
        cache_shape = (runtime.max_batch_size, runtime.max_seq_len, self.num_kv_heads, self.head_dim)
        # Zero-filled, not empty: masked-out garbage (NaN) would still poison softmax(...) @ V.
        self.register_buffer("k_cache", torch.zeros(cache_shape, dtype=dtype), persistent=False)
        self.register_buffer("v_cache", torch.zeros(cache_shape, dtype=dtype), persistent=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, positions: torch.Tensor,
                slots: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        batch, num_tokens, _ = x.shape
        q = self.q_proj(x).view(batch, num_tokens, self.num_heads, self.head_dim)
        k = self.k_proj(x).view(batch, num_tokens, self.num_kv_heads, self.head_dim)
        v = self.v_proj(x).view(batch, num_tokens, self.num_kv_heads, self.head_dim)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)

        self.k_cache[slots[:, None], positions] = k
        self.v_cache[slots[:, None], positions] = v
        num_keys = int(positions.max()) + 1
        if batch == 1:  # a view, no gather copy
            keys, values = self.k_cache[int(slots[0]), None, :num_keys], self.v_cache[int(slots[0]), None, :num_keys]
        else:
            keys, values = self.k_cache[slots, :num_keys], self.v_cache[slots, :num_keys]

        out = F.scaled_dot_product_attention(  # (B, heads, T, hd)
            q.transpose(1, 2), keys.transpose(1, 2), values.transpose(1, 2), attn_mask=mask, enable_gqa=True)
        return self.o_proj(out.transpose(1, 2).reshape(batch, num_tokens, self.num_heads * self.head_dim))

    def reset_cache(self) -> None:
        self.k_cache.zero_()
        self.v_cache.zero_()
