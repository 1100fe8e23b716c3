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
from model.kernels.gemv import (
    GEMV_MAX_PAIRS,
    GEMV_MAX_ROWS,
    PairSum,
    SharedOperand,
    dequantize_fp8,
    expert_gemv,
    linear_float32_partials,
    quantize_fp8,
    shared_down,
    shared_gate_up,
)
from model.kernels.router import can_route, logits_and_route, route
from model.layers.linear import Linear
from model.layers.merged import merge_linears
from model.runtime import Runtime

EXPERT_PROJECTIONS = ("gate_proj", "up_proj", "down_proj")


class FeedForward(nn.Module):
    """SwiGLU MLP: the dense layers and the shared experts."""

    def __init__(self, dim: int, hidden: int, bias: bool, dtype: torch.dtype) -> None:
        super().__init__()
        self.gate_proj = Linear(dim, hidden, bias, dtype)
        self.up_proj = Linear(dim, hidden, bias, dtype)
        self.down_proj = Linear(hidden, dim, bias, dtype)
        self.register_buffer("merged_gate_up", None, persistent=False)  # see merge_projections

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged_gate_up is None:
            gate, up = self.gate_proj(x), self.up_proj(x)
        else:
            gate, up = F.linear(x, self.merged_gate_up).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * up)

    def merge_projections(self) -> None:
        """gate_proj and up_proj as one matrix (model/layers/merged.py)."""
        self.merged_gate_up = merge_linears(self.gate_proj, self.up_proj)


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
        self.drops_no_group = self.topk_method == "greedy" or self.topk_group == self.num_groups
        if self.has_bias:  # float32 whatever the runtime dtype: it decides near-ties between experts
            self.register_buffer("e_score_correction_bias",
                                 torch.zeros(num_experts, dtype=torch.float32, device=runtime.device))
        # Per-token arrival counts of the one-kernel router (model/kernels/router.py); always back to zero.
        self.register_buffer("arrivals", torch.zeros(GEMV_MAX_ROWS, dtype=torch.int32, device=runtime.device),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [N, D] -> (weights [N, k] float32, expert ids [N, k])."""
        bias = self.e_score_correction_bias if self.has_bias else None
        routing = (self.top_k, self.scoring_func == "softmax", self.norm_topk_prob, self.routed_scaling_factor)
        if self.drops_no_group and can_route(x) and x.shape[0] <= GEMV_MAX_ROWS:  # one kernel for all of it
            return logits_and_route(x, self.weight, self.arrivals, bias, *routing)
        # float32 whatever the runtime dtype, as the references; partial sums over slices of D
        partials = linear_float32_partials(x, self.weight)
        if self.drops_no_group and can_route(partials):  # the rest in one kernel (model/kernels/router.py)
            return route(partials, bias, *routing)
        logits = partials.sum(dim=0)
        scores = logits.softmax(dim=-1) if self.scoring_func == "softmax" else logits.sigmoid()
        if self.drops_no_group:
            choice = scores if self.topk_method != "noaux_tc" else scores + self.e_score_correction_bias
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
    """All routed experts' weights stacked as transformers 5 holds them: gate_up [E, 2I, D] (gate rows
    first), down [E, D, I]. One fused gate/up tensor lets one grouped GEMM serve both projections."""

    def __init__(self, config: DeepseekConfig, runtime: Runtime) -> None:
        super().__init__()
        num_experts, dim, hidden = config.n_routed_experts, config.hidden_size, config.moe_intermediate_size
        self.hidden, self.dtype = hidden, runtime.dtype
        for name, shape in {"gate_up_proj": (2 * hidden, dim), "down_proj": (dim, hidden)}.items():
            stacked = torch.empty(num_experts, *shape, dtype=runtime.dtype)  # on the default device, as Linear
            self.register_parameter(name, nn.Parameter(stacked, requires_grad=False))
        # On the CPU a loop over the hit experts is fastest (measured); on a GPU in bfloat16, GEMVs
        # (few pairs) or a grouped GEMM run without host syncs, which CUDA graphs need. (CUDA's
        # grouped GEMM takes bfloat16 only; float32 on a GPU is for parity checks and loops.)
        self.sync_free = runtime.device != "cpu" and runtime.dtype == torch.bfloat16
        # Expert parallel (model/parallel.py): this module holds experts first_expert.. only.
        self.first_expert = 0
        # Per-tile float32 scales once the stacks are float8 (`store_fp8`); None while they are float.
        self.gate_up_scale: nn.Parameter | None = None
        self.down_scale: nn.Parameter | None = None

    @property
    def num_experts(self) -> int:
        return self.down_proj.shape[0]

    @property
    def is_fp8(self) -> bool:
        return self.down_scale is not None

    def store_fp8(self) -> None:
        """Keeps the stacks as float8_e4m3fn with a float32 scale per 128 x 128 tile (the layout of
        DeepSeek's FP8 checkpoints): half the bytes a decode step reads. The expert GEMV dequantizes
        in registers; the other paths dequantize the stacks first (`model/kernels/gemv.py`)."""
        for name in ("gate_up_proj", "down_proj"):
            stack = getattr(self, name).data
            quantized = torch.empty_like(stack, dtype=torch.float8_e4m3fn)
            scales = []
            for expert, weight in enumerate(stack):  # one at a time: a V3 stack's float32 temporaries ~100 GB
                quantized[expert], expert_scales = quantize_fp8(weight)
                scales.append(expert_scales)
            setattr(self, name, nn.Parameter(quantized, requires_grad=False))
            setattr(self, name.replace("_proj", "_scale"), nn.Parameter(torch.stack(scales), requires_grad=False))

    def _float_stacks(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(gate_up, down) in the runtime's float type; a dequantized copy when stored in fp8."""
        if not self.is_fp8:
            return self.gate_up_proj, self.down_proj
        return (dequantize_fp8(self.gate_up_proj, self.gate_up_scale).to(self.dtype),
                dequantize_fp8(self.down_proj, self.down_scale).to(self.dtype))

    def _slot(self, expert: int, projection: str) -> torch.Tensor:
        if projection not in EXPERT_PROJECTIONS or not 0 <= expert < self.num_experts:
            raise KeyError(f"no routed expert tensor {expert}.{projection}")
        if self.is_fp8:  # a float copy: what a checkpoint saved from this model holds
            gate_up, down = (dequantize_fp8(w.data[expert], s.data[expert]).to(self.dtype)
                             for w, s in ((self.gate_up_proj, self.gate_up_scale), (self.down_proj, self.down_scale)))
        else:
            gate_up, down = self.gate_up_proj.data[expert], self.down_proj.data[expert]
        if projection == "down_proj":
            return down
        gate, up = gate_up.split(self.hidden)
        return gate if projection == "gate_proj" else up

    def load_expert(self, expert: int, projection: str, tensor: torch.Tensor) -> None:
        if self.is_fp8:
            raise RuntimeError("load the experts before storing them in fp8")
        slot = self._slot(expert, projection)
        if tensor.shape != slot.shape:
            raise ValueError(f"expert {expert}.{projection}: shape {tuple(tensor.shape)} != {tuple(slot.shape)}")
        slot.copy_(tensor)

    def checkpoint_tensors(self) -> dict[str, torch.Tensor]:
        """Per-expert tensors under the checkpoints' own names ("{expert}.{projection}.weight")."""
        return {f"{expert}.{projection}.weight": self._slot(expert, projection)
                for projection in EXPERT_PROJECTIONS for expert in range(self.num_experts)}

    def runs_gemv(self, num_pairs: int) -> bool:
        """Whether `num_pairs` (token, expert) pairs go to the GEMV path (fixed per captured batch size)."""
        return self.sync_free and num_pairs <= GEMV_MAX_PAIRS

    def forward(self, x: torch.Tensor, weights: torch.Tensor, expert_ids: torch.Tensor) -> torch.Tensor:
        """x [N, D], weights / expert_ids [N, k] -> sum_k weights * expert_k(x) [N, D]."""
        if self.runs_gemv(expert_ids.numel()):
            scales = (self.gate_up_scale, self.down_scale) if self.is_fp8 else None
            return gemv_experts(x, weights, expert_ids, self.gate_up_proj, self.down_proj, self.first_expert,
                                scales=scales)
        run = grouped_experts if self.sync_free else looped_experts
        return run(x, weights, expert_ids, *self._float_stacks(), self.first_expert)


def _pairs_by_expert(expert_ids: torch.Tensor, first_expert: int,
                     num_experts: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(order, counts, is_ours): the (token, k) pairs' flat indices sorted by expert, the
    pairs per expert of ours, and which pairs go to ours. Pairs routed to another rank's experts
    sort last and are not counted, so no GEMM reaches them.

    scatter_add_ rather than bincount, which syncs with the host on CUDA to size its output.
    """
    local_ids = expert_ids.flatten() - first_expert
    is_ours = (local_ids >= 0) & (local_ids < num_experts)
    local_ids = torch.where(is_ours, local_ids, num_experts)
    counts = torch.zeros(num_experts + 1, dtype=torch.int64, device=local_ids.device)
    counts.scatter_add_(0, local_ids, torch.ones_like(local_ids))
    # Any order within an expert will do (outputs go back by index), and an unstable sort of a few
    # hundred keys is one small kernel on CUDA where the stable one is a radix sort of several.
    return local_ids.sort().indices, counts[:num_experts], is_ours


def _combine(sorted_out: torch.Tensor, order: torch.Tensor, is_ours: torch.Tensor,
             weights: torch.Tensor) -> torch.Tensor:
    """Puts expert outputs back in pair order and sums each token's k of them with the router weights;
    pairs of other ranks' experts (rows no GEMM wrote) count as zero.
    (torch's CPU index_add_ took 76 ms per call at V2-Lite sizes, 20x the matmuls.)"""
    pair_out = torch.empty_like(sorted_out)
    pair_out[order] = sorted_out
    pair_out = pair_out.masked_fill(~is_ours[:, None], 0)
    num_tokens, top_k = weights.shape
    return (pair_out.view(num_tokens, top_k, -1) * weights[..., None]).sum(dim=1).to(sorted_out.dtype)


def looped_experts(x: torch.Tensor, weights: torch.Tensor, expert_ids: torch.Tensor, gate_up: torch.Tensor,
                   down: torch.Tensor, first_expert: int = 0) -> torch.Tensor:
    """Each expert that got any pair runs once on its rows, reading its weights in place (a batched
    gather of per-pair weights would copy them first). Syncs with the host once per layer."""
    top_k = expert_ids.shape[1]
    order, counts, is_ours = _pairs_by_expert(expert_ids, first_expert, gate_up.shape[0])
    hit_experts = counts.nonzero().flatten()
    # Pairs of hit_experts[i] (ascending, as the sort is) sit at bounds[i]:bounds[i + 1] of `order`.
    bounds = torch.cat([counts.new_zeros(1), counts[hit_experts].cumsum(0)]).tolist()
    sorted_out = torch.empty(order.numel(), x.shape[-1], dtype=x.dtype, device=x.device)
    for expert, start, stop in zip(hit_experts.tolist(), bounds[:-1], bounds[1:], strict=True):
        gate, up = F.linear(x[order[start:stop] // top_k], gate_up[expert]).chunk(2, dim=-1)
        sorted_out[start:stop] = F.linear(F.silu(gate) * up, down[expert])
    return _combine(sorted_out, order, is_ours, weights)


def grouped_experts(x: torch.Tensor, weights: torch.Tensor, expert_ids: torch.Tensor, gate_up: torch.Tensor,
                    down: torch.Tensor, first_expert: int = 0) -> torch.Tensor:
    """The same sum as `looped_experts` in two grouped GEMMs (rows sorted by expert, group ends in
    `offs`): every hit expert's weights are read once, empty groups cost nothing, no host sync."""
    top_k = expert_ids.shape[1]
    order, counts, is_ours = _pairs_by_expert(expert_ids, first_expert, gate_up.shape[0])
    offs = counts.cumsum(0).to(torch.int32)
    rows = x[order // top_k]
    gate, up = torch._grouped_mm(rows, gate_up.transpose(1, 2), offs=offs).chunk(2, dim=-1)
    sorted_out = torch._grouped_mm(F.silu(gate) * up, down.transpose(1, 2), offs=offs)
    return _combine(sorted_out, order, is_ours, weights)


def gemv_experts(x: torch.Tensor, weights: torch.Tensor, expert_ids: torch.Tensor, gate_up: torch.Tensor,
                 down: torch.Tensor, first_expert: int = 0, *,
                 scales: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """The same sum for a few pairs, each pair's expert read by a GEMV (model/kernels/gemv.py): the
    first writes silu(gate) * up, the second adds the pairs up; pairs stay in token order, so
    nothing is sorted or scattered. scales: the fp8 stacks' tile scales (gate_up, down)."""
    gate_up_scale, down_scale = scales if scales is not None else (None, None)
    hidden = expert_gemv(x, gate_up, expert_ids, first_expert, scales=gate_up_scale, glu_out=True)
    return expert_gemv(hidden, down, expert_ids, first_expert, scales=down_scale, pair_input=True,
                       sum_pairs=PairSum(weights, None))


def gemv_experts_and_shared(x: torch.Tensor, gate: Gate, experts: RoutedExperts,
                            shared: tuple[SharedOperand, SharedOperand],
                            side_stream: torch.cuda.Stream | None = None,
                            residual: torch.Tensor | None = None) -> torch.Tensor:
    """Routed plus shared experts of x [N, D] on the GEMV path, the shared ones as pairs of weight 1
    after each token's routed ones, plus `residual` [N, D] if given. The shared pairs' gate/up needs
    no routing: it runs first, on `side_stream` when given, beside gate(x) -> (weights, expert ids)
    (the router's GEMV and top-k, mostly latency); the down projection then takes all pairs in one
    GEMV, which also adds them up (with the residual)."""
    shared_gate_up, shared_down_ = shared
    (num_tokens, _), top_k = x.shape, gate.top_k
    hidden = x.new_empty(num_tokens * (top_k + shared_gate_up.count), experts.gate_up_proj.shape[1] // 2)
    unrouted = torch.empty(num_tokens, top_k, dtype=torch.long, device=x.device)  # shared slots read no id
    shared_part = (x, experts.gate_up_proj, unrouted, experts.first_expert, shared_gate_up,
                   (top_k, shared_gate_up.count), hidden)
    if side_stream is not None:
        _forked(side_stream, _gate_up_slots, *shared_part)
    else:
        _gate_up_slots(*shared_part)
    weights, expert_ids = gate(x)
    _gate_up_slots(x, experts.gate_up_proj, expert_ids, experts.first_expert, shared_gate_up, (0, top_k), hidden)
    if side_stream is not None:
        _joined(side_stream, hidden)
    # other ranks' routed pairs: zero rows
    return expert_gemv(hidden, experts.down_proj, expert_ids, experts.first_expert, shared=shared_down_,
                       pair_input=True, sum_pairs=PairSum(weights, residual))


def _gate_up_slots(x, gate_up, expert_ids, first_expert, shared, slots, out) -> None:
    """silu(gate) * up of these slots of every token into their rows of `out`."""
    expert_gemv(x, gate_up, expert_ids, first_expert, shared=shared, glu_out=True, slots=slots, out=out)


def _plus(x: torch.Tensor, residual: torch.Tensor | None) -> torch.Tensor:
    return x if residual is None else residual + x


@torch.compiler.disable  # stream switches stay out of torch.compile's graphs and run as written
def _forked(stream: torch.cuda.Stream, fn, x: torch.Tensor, *args):
    """fn(x, *args) enqueued on `stream` after what the current stream has enqueued so far."""
    stream.wait_stream(torch.cuda.current_stream(x.device))
    with torch.cuda.stream(stream):
        return fn(x, *args)


@torch.compiler.disable
def _joined(stream: torch.cuda.Stream, y: torch.Tensor) -> torch.Tensor:
    """y once `stream` is done, for work of the current stream enqueued from now on."""
    torch.cuda.current_stream(y.device).wait_stream(stream)
    return y


class MoE(nn.Module):
    def __init__(self, config: DeepseekConfig, runtime: Runtime) -> None:
        super().__init__()
        self.gate = Gate(config, runtime)
        self.experts = RoutedExperts(config, runtime)
        shared_hidden = config.moe_intermediate_size * config.n_shared_experts
        self.shared_experts = (FeedForward(config.hidden_size, shared_hidden, config.mlp_bias, runtime.dtype)
                               if config.n_shared_experts else None)
        # On a GPU the shared experts run on a second stream, beside the router and the routed
        # experts: at batch 1 each of these kernels is short enough that its start-up and tail are a
        # large part of it, and two independent chains hide each other's (docs/gpu.md). A captured
        # CUDA graph keeps the fork and the join. Memory is safe without record_stream: the input
        # lives until after the join, and the side stream's next work waits for this one's sum.
        self.side_stream = (torch.cuda.Stream(runtime.device)
                            if self.shared_experts is not None and runtime.device != "cpu" else None)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        """The MoE of x [..., D], plus `residual` (same shape) if given: on the GEMV path with the shared
        experts as pairs, the down GEMV adds it, or torch right after it in the same compiled graph
        (`expert_gemv`'s sum_pairs), so it needs no kernel of its own."""
        if self.shared_experts is None:
            return _plus(self._routed(x), residual)
        shared = self._shared_operands(x.shape[:-1].numel())
        if shared is not None:
            flat = x.reshape(-1, x.shape[-1])
            flat_residual = residual.reshape(flat.shape) if residual is not None else None
            return gemv_experts_and_shared(flat, self.gate, self.experts, shared, self.side_stream,
                                           flat_residual).view(x.shape)
        if self.side_stream is None:
            return _plus(self._routed(x) + self.shared_experts(x), residual)
        shared_out = _forked(self.side_stream, self.shared_experts, x)
        return _plus(self._routed(x) + _joined(self.side_stream, shared_out), residual)

    def _shared_operands(self, num_tokens: int) -> tuple[SharedOperand, SharedOperand] | None:
        """The shared experts as extra pairs of the routed experts' GEMVs, where those run and can
        read them: merged gate/up (model/layers/merged.py), a width of whole routed experts (not
        after a tensor-parallel cut to less), and the routed experts' element type. At batch 1 this
        replaces the shared MLP's five kernels with two GEMV launches (docs/gpu.md)."""
        mlp, experts = self.shared_experts, self.experts
        down = mlp.down_proj
        if (mlp.merged_gate_up is None or type(down) is not Linear or down.bias is not None
                or not experts.runs_gemv(num_tokens * self.gate.top_k)
                or down.weight.shape[1] % experts.hidden or down.weight.dtype != experts.down_proj.dtype):
            return None
        count = down.weight.shape[1] // experts.hidden
        return shared_gate_up(mlp.merged_gate_up, count), shared_down(down.weight, count)

    def _routed(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        weights, expert_ids = self.gate(flat)
        return self.experts(flat, weights, expert_ids).view(x.shape)
