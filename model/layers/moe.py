"""DeepSeekMoE: a router picks `num_experts_per_tok` of `n_routed_experts` SwiGLU experts per token,
their outputs are summed with the router's weights, and always-on shared experts are added.

Routing (all in float32, as the references do):
  scores    softmax (V2) or sigmoid (V3) of the router logits
  greedy                top-k of the scores
  group_limited_greedy  keep the `topk_group` groups whose best score is highest, top-k inside them
  noaux_tc              like the above on scores + e_score_correction_bias, a group ranked by the sum of
                        its two best; the bias only steers the choice, the weights are the unbiased scores
then optionally normalise the chosen weights to sum 1 (norm_topk_prob) and multiply by routed_scaling_factor.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.config.deepseek import DeepseekConfig
from model.layers.linear import Linear
from model.runtime import Runtime

EXPERT_PROJECTIONS = ("gate_proj", "up_proj", "down_proj")


class FeedForward(nn.Module):
    """SwiGLU MLP: the dense layers and the shared experts."""

    def __init__(self, dim: int, hidden: int, bias: bool, dtype: torch.dtype) -> None:
        super().__init__()
        self.gate_proj = Linear(dim, hidden, bias, dtype)
        self.up_proj = Linear(dim, hidden, bias, dtype)
        self.down_proj = Linear(hidden, dim, bias, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Gate(nn.Module):
    def __init__(self, config: DeepseekConfig, runtime: Runtime) -> None:
        super().__init__()
        self.top_k = config.num_experts_per_tok
        self.num_groups, self.topk_group = config.n_group, config.topk_group
        self.topk_method, self.scoring_func = config.topk_method, config.scoring_func
        self.norm_topk_prob, self.routed_scaling_factor = config.norm_topk_prob, config.routed_scaling_factor
        num_experts = config.n_routed_experts
        self.weight = nn.Parameter(torch.empty(num_experts, config.hidden_size, dtype=runtime.dtype,
                                               device=runtime.device), requires_grad=False)
        self.has_bias = self.topk_method == "noaux_tc"
        if self.has_bias:  # float32 whatever the runtime dtype: it decides near-ties between experts
            self.register_buffer("e_score_correction_bias",
                                 torch.zeros(num_experts, dtype=torch.float32, device=runtime.device))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [N, D] -> (weights [N, k] float32, expert ids [N, k])."""
        logits = F.linear(x.float(), self.weight.float())
        scores = logits.softmax(dim=-1) if self.scoring_func == "softmax" else logits.sigmoid()
        if self.topk_method == "greedy":
            choice = scores
        elif self.topk_method == "group_limited_greedy":
            group_rank = scores.unflatten(-1, (self.num_groups, -1)).amax(dim=-1)
            choice = self._keep_best_groups(scores, group_rank, 0.0)
        else:
            biased = scores + self.e_score_correction_bias
            group_rank = biased.unflatten(-1, (self.num_groups, -1)).topk(2, dim=-1).values.sum(dim=-1)
            choice = self._keep_best_groups(biased, group_rank, float("-inf"))
        expert_ids = choice.topk(self.top_k, dim=-1, sorted=False).indices
        weights = scores.gather(1, expert_ids)
        if self.norm_topk_prob:
            weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)
        return weights * self.routed_scaling_factor, expert_ids

    def _keep_best_groups(self, scores: torch.Tensor, group_rank: torch.Tensor, fill: float) -> torch.Tensor:
        best_groups = group_rank.topk(self.topk_group, dim=-1, sorted=False).indices
        keep = torch.zeros_like(group_rank, dtype=torch.bool).scatter_(1, best_groups, True)
        return scores.masked_fill(~keep.repeat_interleave(scores.shape[-1] // self.num_groups, dim=-1), fill)

    def load_tensor(self, name: str, tensor: torch.Tensor) -> None:
        target = {"weight": self.weight.data}
        if self.has_bias:
            target["e_score_correction_bias"] = self.e_score_correction_bias
        if name not in target or target[name].shape != tensor.shape:
            raise KeyError(f"the MoE gate has no tensor {name!r} of shape {tuple(tensor.shape)}")
        target[name].copy_(tensor)

    def checkpoint_names(self) -> tuple[str, ...]:
        return ("weight", "e_score_correction_bias") if self.has_bias else ("weight",)

    def checkpoint_tensors(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name).data for name in self.checkpoint_names()}


class RoutedExperts(nn.Module):
    """All routed experts' weights stacked: gate/up [E, I, D], down [E, D, I]."""

    def __init__(self, config: DeepseekConfig, runtime: Runtime) -> None:
        super().__init__()
        num_experts, dim, hidden = config.n_routed_experts, config.hidden_size, config.moe_intermediate_size
        shapes = {"gate_proj": (hidden, dim), "up_proj": (hidden, dim), "down_proj": (dim, hidden)}
        for projection, shape in shapes.items():
            stacked = torch.empty(num_experts, *shape, dtype=runtime.dtype, device=runtime.device)
            self.register_parameter(projection, nn.Parameter(stacked, requires_grad=False))

    def load_expert(self, expert: int, projection: str, tensor: torch.Tensor) -> None:
        stacked = getattr(self, projection)
        if projection not in EXPERT_PROJECTIONS or not 0 <= expert < stacked.shape[0]:
            raise KeyError(f"no routed expert tensor {expert}.{projection}")
        if tensor.shape != stacked.shape[1:]:
            raise ValueError(f"expert {expert}.{projection}: shape {tuple(tensor.shape)} "
                             f"!= {tuple(stacked.shape[1:])}")
        stacked.data[expert].copy_(tensor)

    def checkpoint_tensors(self) -> dict[str, torch.Tensor]:
        """Per-expert tensors under the checkpoints' own names ("{expert}.{projection}.weight")."""
        return {f"{expert}.{projection}.weight": getattr(self, projection).data[expert]
                for projection in EXPERT_PROJECTIONS for expert in range(self.gate_proj.shape[0])}

    def forward(self, x: torch.Tensor, weights: torch.Tensor, expert_ids: torch.Tensor) -> torch.Tensor:
        """x [N, D], weights / expert_ids [N, k] -> sum_k weights * expert_k(x) [N, D].

        The (token, expert) pairs are sorted by expert and each expert that got any runs once on
        its rows, reading its weights in place (a batched gather of per-pair weights would copy
        them first). Outputs are put back in pair order and summed per token: torch's CPU
        index_add_ (scatter_add_) took 76 ms per call at V2-Lite sizes, 20x the matmuls.
        """
        num_tokens, top_k = expert_ids.shape
        flat_ids = expert_ids.flatten()
        order = flat_ids.argsort(stable=True)
        counts = torch.bincount(flat_ids, minlength=self.gate_proj.shape[0])
        hit_experts = counts.nonzero().flatten()
        # Pairs of hit_experts[i] (ascending, as the sort is) sit at bounds[i]:bounds[i + 1] of `order`.
        bounds = torch.cat([counts.new_zeros(1), counts[hit_experts].cumsum(0)]).tolist()
        sorted_out = torch.empty(flat_ids.numel(), x.shape[-1], dtype=x.dtype, device=x.device)
        for expert, start, stop in zip(hit_experts.tolist(), bounds[:-1], bounds[1:], strict=True):
            rows = x[order[start:stop] // top_k]
            hidden = F.silu(F.linear(rows, self.gate_proj[expert])) * F.linear(rows, self.up_proj[expert])
            sorted_out[start:stop] = F.linear(hidden, self.down_proj[expert])
        pair_out = torch.empty_like(sorted_out)
        pair_out[order] = sorted_out
        return (pair_out.view(num_tokens, top_k, -1) * weights[..., None]).sum(dim=1).to(x.dtype)


class MoE(nn.Module):
    def __init__(self, config: DeepseekConfig, runtime: Runtime) -> None:
        super().__init__()
        self.gate = Gate(config, runtime)
        self.experts = RoutedExperts(config, runtime)
        shared_hidden = config.moe_intermediate_size * config.n_shared_experts
        self.shared_experts = (FeedForward(config.hidden_size, shared_hidden, config.mlp_bias, runtime.dtype)
                               if config.n_shared_experts else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        weights, expert_ids = self.gate(flat)
        out = self.experts(flat, weights, expert_ids).view(x.shape)
        return out if self.shared_experts is None else out + self.shared_experts(x)
