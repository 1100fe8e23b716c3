"""Multi-head Latent Attention (DeepSeek-V2/V3) over a static slot cache of compressed latents.

Symbols (per token; H heads):
  x      hidden state [D]
  c_q    query latent = RMSNorm(W_dq x) [q_lora_rank]; without q LoRA the query is W_q x directly
  q      W_uq c_q, per head split into q_nope [d_nope] (no position) and q_pe [d_rope] (rotated)
  c_kv   key/value latent = RMSNorm(first kv_lora_rank dims of W_dkv x) [r], shared by all heads
  k_pe   rope key = rotated last d_rope dims of W_dkv x, shared by all heads
  W_uk, W_uv  the per-head blocks of kv_b_proj: k_nope = W_uk c_kv [d_nope], v = W_uv c_kv [d_v]

score(t, s) = scale * (q_nope_t . k_nope_s + q_pe_t . k_pe_s), out_t = W_o concat_h(sum_s p(t,s) v_s).

The cache holds only c_kv and k_pe per token (r + d_rope numbers instead of H * (d_nope + d_rope + d_v)).
Two ways to compute the same attention from it:
  naive (prefill, T > 1): expand every cached c_kv into k_nope and v with kv_b_proj, then ordinary
    attention; cheap when many queries share the expansion.
  absorbed (decode, T = 1): q_nope . (W_uk c_kv) = (W_uk^T q_nope) . c_kv, so fold W_uk into the
    query (q_lat [r] per head) and W_uv into the output (attend over c_kv, then apply W_uv); the
    cached latents are read once and never expanded. On a GPU with few (row, head) pairs the
    attention over c_kv runs in Triton kernels (model/kernels/latent_attention.py).

scale = 1/sqrt(d_nope + d_rope), times mscale(factor, mscale_all_dim)^2 under YaRN, and the rope
cos/sin carry YaRN's attention factor: both as transformers computes them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from model.config.deepseek import DeepseekConfig
from model.kernels import latent_attention
from model.layers.linear import Linear
from model.layers.merged import merge_linears
from model.layers.norm import RMSNorm
from model.runtime import Runtime

_DEFAULT_BETA_FAST, _DEFAULT_BETA_SLOW = 32, 1  # YaRN's defaults when the config leaves them out


def _yarn_mscale(factor: float, mscale: float = 1.0) -> float:
    return 1.0 if factor <= 1 else 0.1 * mscale * math.log(factor) + 1.0


def rope_parameters(config: DeepseekConfig) -> tuple[torch.Tensor, float, float]:
    """(inv_freq [d_rope // 2] float32, cos/sin attention factor, softmax scale) for the rope part."""
    dim, base = config.qk_rope_head_dim, config.rope_theta
    # float32 exponent, as transformers computes it, so the angles match bit for bit. On the CPU
    # whatever the default device, so a model built on the meta device still gets real tables.
    pos_freqs = base ** (torch.arange(0, dim, 2, dtype=torch.float32, device="cpu") / dim)
    softmax_scale = config.qk_head_dim ** -0.5
    if config.rope_type == "default":
        return 1.0 / pos_freqs, 1.0, softmax_scale
    scaling = config.rope_scaling
    factor = float(scaling["factor"])
    mscale, mscale_all_dim = scaling.get("mscale"), scaling.get("mscale_all_dim")
    attention_factor = scaling.get("attention_factor")
    if attention_factor is None:
        attention_factor = (_yarn_mscale(factor, mscale) / _yarn_mscale(factor, mscale_all_dim)
                            if mscale and mscale_all_dim else _yarn_mscale(factor))
    if mscale_all_dim:
        softmax_scale *= _yarn_mscale(factor, mscale_all_dim) ** 2
    low, high = _yarn_correction_range(scaling, dim, base)
    if low == high:
        high += 0.001  # a one-point ramp would divide by zero
    ramp = ((torch.arange(dim // 2, dtype=torch.float32, device="cpu") - low) / (high - low)).clamp(0, 1)
    extrapolation_weight = 1 - ramp  # high frequencies keep their trained values, low ones are interpolated
    inv_freq = ((1.0 / (factor * pos_freqs)) * (1 - extrapolation_weight)
                + (1.0 / pos_freqs) * extrapolation_weight)
    return inv_freq, float(attention_factor), softmax_scale


def _yarn_correction_range(scaling: dict, dim: int, base: float) -> tuple[float, float]:
    original_len = scaling["original_max_position_embeddings"]

    def dim_of(num_rotations: float) -> float:
        return dim * math.log(original_len / (num_rotations * 2 * math.pi)) / (2 * math.log(base))

    low = dim_of(scaling.get("beta_fast") or _DEFAULT_BETA_FAST)
    high = dim_of(scaling.get("beta_slow") or _DEFAULT_BETA_SLOW)
    if scaling.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    return max(low, 0), min(high, dim - 1)


def rope_cos_sin(positions: torch.Tensor, inv_freq: torch.Tensor, attention_factor: float,
                 dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin [B, T, d_rope // 2] (one per rotated pair)."""
    angles = positions[..., None].float() * inv_freq
    return (angles.cos() * attention_factor).to(dtype), (angles.sin() * attention_factor).to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, is_interleaved: bool) -> torch.Tensor:
    """x [B, T, heads, d_rope] -> rotated, laid out as (first, second) members of the pairs.

    Interleaved checkpoints pair (x0, x1), (x2, x3)...; rotate-half ones pair (x_i, x_{i + d/2}).
    The output order differs from the input's for interleaved pairs, which is harmless: q_pe and
    k_pe get the same permutation and meet only in a dot product.
    """
    if is_interleaved:
        first, second = x[..., 0::2], x[..., 1::2]
    else:
        first, second = x.chunk(2, dim=-1)
    cos, sin = cos[:, :, None, :], sin[:, :, None, :]
    return torch.cat([first * cos - second * sin, second * cos + first * sin], dim=-1)


class LatentUpProjection(Linear):
    """kv_b_proj. A class of its own so weight-only quantization (which swaps exact `Linear`s)
    leaves it in float: the absorbed decode path reads its weight as W_uk / W_uv blocks."""


class MultiHeadLatentAttention(nn.Module):
    def __init__(self, config: DeepseekConfig, runtime: Runtime) -> None:
        super().__init__()
        dim, dtype, heads = config.hidden_size, runtime.dtype, config.num_heads
        self.num_heads, self.kv_lora_rank = heads, config.kv_lora_rank
        self.d_nope, self.d_rope = config.qk_nope_head_dim, config.qk_rope_head_dim
        self.d_v = config.v_head_dim
        self.is_interleaved = config.rope_interleave
        self.has_q_lora = config.q_lora_rank is not None
        if self.has_q_lora:
            self.q_a_proj = Linear(dim, config.q_lora_rank, config.attention_bias, dtype)
            # transformers builds this norm (and kv_a_layernorm) with the default eps, not rms_norm_eps.
            self.q_a_layernorm = RMSNorm(config.q_lora_rank, 1e-6, dtype)
            self.q_b_proj = Linear(config.q_lora_rank, heads * config.qk_head_dim, False, dtype)
        else:
            self.q_proj = Linear(dim, heads * config.qk_head_dim, False, dtype)
        self.kv_a_proj_with_mqa = Linear(dim, config.kv_lora_rank + self.d_rope, config.attention_bias, dtype)
        self.kv_a_layernorm = RMSNorm(config.kv_lora_rank, 1e-6, dtype)
        self.kv_b_proj = LatentUpProjection(config.kv_lora_rank, heads * (self.d_nope + self.d_v), False,
                                            dtype)
        self.o_proj = Linear(heads * self.d_v, dim, config.attention_bias, dtype)
        # [query input rows; kv_a rows] once merge_projections ran (model/layers/merged.py)
        self.register_buffer("merged_input_proj", None, persistent=False)
        slots, length = runtime.max_batch_size, runtime.max_seq_len
        # Zero-filled, not empty: masked-out garbage (NaN) would still poison softmax(...) @ V.
        self.register_buffer("latent_cache", torch.zeros(slots, length, config.kv_lora_rank, dtype=dtype,
                                                         device=runtime.device), persistent=False)
        self.register_buffer("rope_key_cache", torch.zeros(slots, length, self.d_rope, dtype=dtype,
                                                           device=runtime.device), persistent=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, positions: torch.Tensor,
                slots: torch.Tensor, mask: torch.Tensor | None, softmax_scale: float,
                num_keys: int | None = None) -> torch.Tensor:
        """x [B, T, D]; mask bool [B, 1, T, L] or None (all visible) -> [B, T, D].

        num_keys: a fixed L, read without a host sync (see DeepseekV3ForCausalLM.forward)."""
        batch, num_tokens, _ = x.shape
        q_input, kv_a = self._input_projections(x)
        q = self.q_b_proj(self.q_a_layernorm(q_input)) if self.has_q_lora else q_input
        q = q.view(batch, num_tokens, self.num_heads, self.d_nope + self.d_rope)
        q_nope, q_pe = q.split([self.d_nope, self.d_rope], dim=-1)
        q_pe = apply_rope(q_pe, cos, sin, self.is_interleaved)
        c_kv, k_pe = kv_a.split([self.kv_lora_rank, self.d_rope], dim=-1)
        self.latent_cache[slots[:, None], positions] = self.kv_a_layernorm(c_kv)
        self.rope_key_cache[slots[:, None], positions] = apply_rope(k_pe[:, :, None], cos, sin,
                                                                    self.is_interleaved)[:, :, 0]

        dynamic = num_keys is None
        if dynamic:
            num_keys = int(positions.max()) + 1
        if num_tokens == 1 and latent_attention.fits(x, self.num_heads, self.kv_lora_rank, self.d_rope, self.d_v):
            # GPU decode: kernels that read each row's cache slot in place and apply W_uv
            # (model/kernels/latent_attention.py); the torch path below is their twin
            out = latent_attention.latent_attention(
                self._query_latent(q_nope), q_pe, self.latent_cache, self.rope_key_cache, slots, positions,
                num_keys, softmax_scale, self._absorbed_weights()[1])
        else:
            c_kv_all, k_pe_all = self._cached(slots, num_keys, dynamic)
            attend = self._absorbed if num_tokens == 1 else self._naive
            out = attend(q_nope, q_pe, c_kv_all, k_pe_all, mask, softmax_scale)  # [B, T, H, d_v]
        return self.o_proj(out.reshape(batch, num_tokens, self.num_heads * self.d_v))

    def _cached(self, slots: torch.Tensor, num_keys: int, dynamic: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """The rows' latent and rope-key caches [B, num_keys, ...]."""
        if dynamic and slots.shape[0] == 1:  # a view, no gather copy (it reads the slot number on the host)
            slot = int(slots[0])
            return self.latent_cache[slot, None, :num_keys], self.rope_key_cache[slot, None, :num_keys]
        return self.latent_cache[slots, :num_keys], self.rope_key_cache[slots, :num_keys]

    def _query_input_proj(self) -> nn.Module:
        """The projection of x that feeds the query: q_a_proj with q LoRA, else q_proj itself."""
        return self.q_a_proj if self.has_q_lora else self.q_proj

    def _input_projections(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(query input projection, kv_a_proj_with_mqa) of x, by one matrix once merged."""
        if self.merged_input_proj is None:
            return self._query_input_proj()(x), self.kv_a_proj_with_mqa(x)
        sizes = [self._query_input_proj().out_features, self.kv_a_proj_with_mqa.out_features]
        return F.linear(x, self.merged_input_proj).split(sizes, dim=-1)

    def merge_projections(self) -> None:
        """The query's input projection and kv_a_proj_with_mqa as one matrix (model/layers/merged.py)."""
        self.merged_input_proj = merge_linears(self._query_input_proj(), self.kv_a_proj_with_mqa)

    def _naive(self, q_nope, q_pe, c_kv_all, k_pe_all, mask, softmax_scale) -> torch.Tensor:
        batch, num_keys, _ = c_kv_all.shape
        kv = self.kv_b_proj(c_kv_all).view(batch, num_keys, self.num_heads, self.d_nope + self.d_v)
        k_nope, v = kv.split([self.d_nope, self.d_v], dim=-1)
        k = torch.cat([k_nope, k_pe_all[:, :, None].expand(-1, -1, self.num_heads, -1)], dim=-1)
        q = torch.cat([q_nope, q_pe], dim=-1)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                             attn_mask=mask, scale=softmax_scale)
        return out.transpose(1, 2)

    def _absorbed_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """W_uk [H, d_nope, r] and W_uv [H, d_v, r]: the per-head blocks of kv_b_proj."""
        w_kv_b = self.kv_b_proj.weight.view(self.num_heads, self.d_nope + self.d_v, self.kv_lora_rank)
        return w_kv_b[:, :self.d_nope], w_kv_b[:, self.d_nope:]

    def _query_latent(self, q_nope: torch.Tensor) -> torch.Tensor:
        """q_nope [B, T, H, d_nope] -> W_uk^T q_nope [B, H, T, r]."""
        return torch.einsum("bthd,hdr->bhtr", q_nope, self._absorbed_weights()[0])

    def _values(self, out_latent: torch.Tensor) -> torch.Tensor:
        """Attended latents [B, T, H, r] -> W_uv out_latent [B, T, H, d_v]."""
        return torch.einsum("bthr,hdr->bthd", out_latent, self._absorbed_weights()[1])

    def _absorbed(self, q_nope, q_pe, c_kv_all, k_pe_all, mask, softmax_scale) -> torch.Tensor:
        q_latent = self._query_latent(q_nope)
        scores = (torch.einsum("bhtr,blr->bhtl", q_latent, c_kv_all)
                  + torch.einsum("bthd,bld->bhtl", q_pe, k_pe_all)) * softmax_scale
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        probs = scores.softmax(dim=-1, dtype=torch.float32).to(c_kv_all.dtype)
        return self._values(torch.einsum("bhtl,blr->bthr", probs, c_kv_all))

    def reset_cache(self) -> None:
        self.latent_cache.zero_()
        self.rope_key_cache.zero_()
