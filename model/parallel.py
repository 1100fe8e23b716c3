"""Tensor- and expert-parallel DeepSeek-V3/V2 across the processes of one torch.distributed group.

Each rank (one process per GPU, or per CPU process with gloo) holds the same loaded model and
`shard_deepseek` cuts it down to its part, in place:

  embedding        rows of the vocabulary [r*V/W, (r+1)*V/W); a token outside gives zeros; all-reduce
  MLA attention    heads [r*H/W, ...): q_proj / q_b_proj and kv_b_proj rows, o_proj columns; all-reduce
                   after o_proj. The latent cache and the low-rank down projections stay whole on every
                   rank: they are shared by all heads and small.
  dense MLP,       gate/up rows and down columns of the intermediate dimension; all-reduce
  shared experts
  routed experts   experts [r*E/W, ...) (expert parallel); the router runs whole on every rank, so all
                   ranks pick the same experts, each computes the pairs routed to its own, and one
                   all-reduce sums them with the shared experts' part
  LM head          rows of the vocabulary; the logits are all-gathered

Biases that an all-reduce would add W times are kept on rank 0 only. Every rank sees the same
activations after each all-reduce, so the ranks never disagree on routing. Run under
`torchrun --nproc-per-node N` (`init_from_env`) or any initialised process group.

The model is loaded whole first and then cut, so loading needs one rank's memory for all of it;
reading only a rank's slices from the checkpoint is not done yet.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from model.layers.linear import Embedding, Linear
from model.layers.mla import MultiHeadLatentAttention
from model.layers.moe import FeedForward, MoE


class ShardingError(ValueError):
    """The model cannot be split evenly over this many ranks, or holds layers that cannot be split."""


@dataclass(frozen=True)
class Shard:
    rank: int
    world_size: int
    group: dist.ProcessGroup | None = None  # None: the default group

    def range_of(self, total: int, what: str) -> tuple[int, int]:
        """[start, stop) of this rank's equal share of `total` items."""
        if total % self.world_size:
            raise ShardingError(f"{what} ({total}) is not divisible by the world size ({self.world_size})")
        size = total // self.world_size
        return self.rank * size, (self.rank + 1) * size


def init_from_env(backend: str | None = None) -> Shard:
    """The process group torchrun describes (RANK, WORLD_SIZE, MASTER_ADDR...): nccl on GPUs, else gloo."""
    if not dist.is_initialized():
        dist.init_process_group(backend or ("nccl" if torch.cuda.is_available() else "gloo"))
    return Shard(dist.get_rank(), dist.get_world_size())


class AllReduced(nn.Module):
    """Runs a module whose output is this rank's partial sum, then sums the ranks' parts."""

    def __init__(self, inner: nn.Module, shard: Shard) -> None:
        super().__init__()
        self.inner, self.shard = inner, shard

    def forward(self, *args, **kwargs) -> torch.Tensor:
        out = self.inner(*args, **kwargs)
        dist.all_reduce(out, group=self.shard.group)
        return out


class VocabParallelEmbedding(nn.Module):
    def __init__(self, embedding: Embedding, shard: Shard) -> None:
        super().__init__()
        self.shard = shard
        self.start, stop = shard.range_of(embedding.weight.shape[0], "the vocabulary")
        self.weight = _keep(embedding.weight, 0, self.start, stop)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        local = tokens - self.start
        is_ours = (local >= 0) & (local < self.weight.shape[0])
        out = F.embedding(local.clamp(0, self.weight.shape[0] - 1), self.weight)
        out = out.masked_fill(~is_ours[..., None], 0)
        dist.all_reduce(out, group=self.shard.group)
        return out


class VocabParallelHead(nn.Module):
    def __init__(self, head: Linear, shard: Shard) -> None:
        super().__init__()
        self.shard = shard
        self.weight = _keep(head.weight, 0, *shard.range_of(head.weight.shape[0], "the vocabulary"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        local = F.linear(x, self.weight).contiguous()
        parts = [torch.empty_like(local) for _ in range(self.shard.world_size)]
        dist.all_gather(parts, local, group=self.shard.group)
        return torch.cat(parts, dim=-1)


def _keep(weight: torch.Tensor, dim: int, start: int, stop: int) -> nn.Parameter:
    """A copy of the slice, so the whole tensor can be freed."""
    return nn.Parameter(weight.data.narrow(dim, start, stop - start).contiguous().clone(), requires_grad=False)


def _shard_linear(linear: nn.Module, dim: int, start: int, stop: int, *, keep_bias: bool) -> None:
    """Keeps rows (dim 0: output features) or columns (dim 1: input features) [start, stop)."""
    if not isinstance(linear, Linear):
        raise ShardingError(f"cannot split a {type(linear).__name__} (quantized layers run on one CPU process)")
    linear.weight = _keep(linear.weight, dim, start, stop)
    if dim == 0:
        linear.out_features = stop - start
    else:
        linear.in_features = stop - start
    if linear.bias is not None:
        if dim == 0:
            linear.bias = _keep(linear.bias, 0, start, stop)
        elif not keep_bias:
            linear.bias = None


def _head_rows(heads: tuple[int, int], per_head: int) -> tuple[int, int]:
    return heads[0] * per_head, heads[1] * per_head


def _shard_attention(attn: MultiHeadLatentAttention, shard: Shard) -> None:
    heads = shard.range_of(attn.num_heads, "the attention heads")
    query = attn.q_b_proj if attn.has_q_lora else attn.q_proj
    _shard_linear(query, 0, *_head_rows(heads, attn.d_nope + attn.d_rope), keep_bias=True)
    _shard_linear(attn.kv_b_proj, 0, *_head_rows(heads, attn.d_nope + attn.d_v), keep_bias=True)
    _shard_linear(attn.o_proj, 1, *_head_rows(heads, attn.d_v), keep_bias=shard.rank == 0)
    attn.num_heads = heads[1] - heads[0]


def _shard_feed_forward(mlp: FeedForward, shard: Shard) -> None:
    hidden = shard.range_of(mlp.gate_proj.out_features, "the MLP's intermediate size")
    _shard_linear(mlp.gate_proj, 0, *hidden, keep_bias=True)
    _shard_linear(mlp.up_proj, 0, *hidden, keep_bias=True)
    _shard_linear(mlp.down_proj, 1, *hidden, keep_bias=shard.rank == 0)


def _shard_moe(moe: MoE, shard: Shard) -> None:
    experts = moe.experts
    start, stop = shard.range_of(experts.num_experts, "the number of routed experts")
    experts.gate_up_proj = _keep(experts.gate_up_proj, 0, start, stop)
    experts.down_proj = _keep(experts.down_proj, 0, start, stop)
    experts.first_expert = start
    if moe.shared_experts is not None:
        _shard_feed_forward(moe.shared_experts, shard)


def shard_deepseek(model: nn.Module, shard: Shard) -> nn.Module:
    """Cuts a loaded DeepseekV3ForCausalLM down to this rank's part, in place (see the module doc).

    Every check runs before anything is cut, so a model that cannot be split is left whole.
    """
    config = model.config
    splits = [(config.vocab_size, "the vocabulary"), (config.num_heads, "the attention heads"),
              (config.n_routed_experts, "the number of routed experts"),
              (config.intermediate_size, "the MLP's intermediate size")]
    if config.n_shared_experts:
        splits.append((config.moe_intermediate_size * config.n_shared_experts,
                       "the shared experts' intermediate size"))
    for total, what in splits:
        shard.range_of(total, what)
    if config.tie_word_embeddings:
        raise ShardingError("a tied embedding/LM head is not split (no DeepSeek checkpoint ties them)")
    if shard.world_size == 1:
        return model
    stack = model.model
    stack.embed_tokens = VocabParallelEmbedding(stack.embed_tokens, shard)
    for layer in stack.layers:
        _shard_attention(layer.self_attn, shard)
        layer.self_attn.o_proj = AllReduced(layer.self_attn.o_proj, shard)
        if isinstance(layer.mlp, MoE):
            _shard_moe(layer.mlp, shard)
        else:
            _shard_feed_forward(layer.mlp, shard)
        layer.mlp = AllReduced(layer.mlp, shard)
    model.lm_head = VocabParallelHead(model.lm_head, shard)
    return model
