"""Where a decode step's GPU time goes: per-kernel times of eager steps (torch.profiler), and single
kernels timed as a decode step runs them (in a captured graph, weights not in L2): the expert GEMV
in bf16 and fp8 against a float32 product and the grouped GEMM, and each dense projection."""

from __future__ import annotations

import json

import torch
from gpu_moe_models import MAX_SEQ_LEN, PROMPT_LEN
from gpu_moe_parity import relative_error


@torch.inference_mode()
def kernel_breakdown(ours, batch: int, vocab: int, device: str, steps: int = 5) -> list[dict]:
    """Per-kernel GPU time of eager decode steps (the graph replays the same kernels)."""
    from torch.profiler import ProfilerActivity, profile

    slots = torch.arange(batch, device=device)
    token = torch.randint(0, vocab, (batch, 1), device=device)
    position = torch.full((batch, 1), PROMPT_LEN, device=device)
    ours(token, position, slots, num_keys=MAX_SEQ_LEN)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            ours(token, position, slots, num_keys=MAX_SEQ_LEN)
        torch.cuda.synchronize()
    rows = [{"kernel": e.key[:90], "us_per_step": e.self_device_time_total / steps, "calls_per_step": e.count / steps}
            for e in prof.key_averages() if e.self_device_time_total > 0]
    return sorted(rows, key=lambda r: -r["us_per_step"])


def per_call_seconds(fn, inputs: list) -> float:
    """GPU time of fn(input), inputs cycled in one captured graph (as a decode step runs it; distinct
    inputs so small matrices are read from HBM, not L2), median of triton's do_bench."""
    import triton.testing

    for item in inputs:  # warm-up outside the graph: autotuning, workspaces
        fn(item)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for item in inputs:
            fn(item)
    return triton.testing.do_bench(graph.replay, return_mode="median") * 1e-3 / len(inputs)


def distinct_copies(make, bytes_each: int, total: int = 1 << 30) -> list:
    return [make() for _ in range(max(1, min(64, total // bytes_each)))]


@torch.inference_mode()
def expert_kernel_check(sizes: dict, device: str) -> dict:
    """The decode-time expert GEMV (Triton) on random data against a float32 torch product, whole and
    as one rank's half of the experts; the same in fp8 (against the product with the dequantized
    weights); its time and bandwidth in bf16 and fp8 vs the grouped GEMM on the same pairs."""
    from model.kernels.gemv import dequantize_fp8, expert_gemv, quantize_fp8

    num_experts, dim, hidden, top_k = (sizes["n_routed_experts"], sizes["hidden_size"],
                                       sizes["moe_intermediate_size"], sizes["num_experts_per_tok"])
    weights = torch.randn(num_experts, 2 * hidden, dim, device=device, dtype=torch.bfloat16)
    fp8_weights, scales = quantize_fp8(weights)
    x = torch.randn(1, dim, device=device, dtype=torch.bfloat16)
    ids = torch.randperm(num_experts, device=device)[:top_k][None]
    want = torch.bmm(weights[ids[0]].float(), x.float().expand(top_k, -1)[:, :, None])[:, :, 0]
    half = num_experts // 2
    local_want = want.masked_fill(~(ids[0] >= half)[:, None], 0)
    want_fp8 = torch.bmm(dequantize_fp8(fp8_weights[ids[0]], scales[ids[0]]), x.float().expand(top_k, -1)[:, :, None])[:, :, 0]
    result = {"error": relative_error(expert_gemv(x, weights, ids), want),
              "error_second_half": relative_error(expert_gemv(x, weights[half:].contiguous(), ids, half), local_want),
              "fp8_error_vs_dequantized": relative_error(expert_gemv(x, fp8_weights, ids, scales=scales), want_fp8),
              "fp8_error_vs_bf16_weights": relative_error(expert_gemv(x, fp8_weights, ids, scales=scales), want)}
    id_sets = [torch.randperm(num_experts, device=device)[:top_k][None] for _ in range(16)]
    gemv_s = per_call_seconds(lambda i: expert_gemv(x, weights, i), id_sets)
    fp8_s = per_call_seconds(lambda i: expert_gemv(x, fp8_weights, i, scales=scales), id_sets)

    def grouped(i):
        order = i[0].sort()
        counts = torch.zeros(num_experts, dtype=torch.int64, device=device)
        counts.scatter_add_(0, i[0], torch.ones_like(i[0]))
        torch._grouped_mm(x.expand(top_k, -1)[order.indices], weights.transpose(1, 2),
                          offs=counts.cumsum(0).to(torch.int32))

    grouped_s = per_call_seconds(grouped, id_sets)
    read = top_k * weights[0].numel() * weights.element_size()
    read_fp8 = top_k * (fp8_weights[0].numel() + scales[0].numel() * 4)
    result |= {"bytes": read, "gemv_us": gemv_s * 1e6, "grouped_gemm_us": grouped_s * 1e6,
               "gemv_bytes_s": read / gemv_s, "grouped_gemm_bytes_s": read / grouped_s,
               "fp8_bytes": read_fp8, "fp8_gemv_us": fp8_s * 1e6, "fp8_gemv_bytes_s": read_fp8 / fp8_s}
    return result


def dense_shapes(sizes: dict) -> dict[str, tuple[int, int]]:
    """(out, in) of a decode step's dense projections, merged as model/layers/merged.py merges them."""
    dim, heads = sizes["hidden_size"], sizes["num_attention_heads"]
    query = sizes["q_lora_rank"] or heads * (sizes["qk_nope_head_dim"] + sizes["qk_rope_head_dim"])
    shared = sizes["moe_intermediate_size"] * sizes["n_shared_experts"]
    return {"q+kv_a": (query + sizes["kv_lora_rank"] + sizes["qk_rope_head_dim"], dim),
            "o_proj": (dim, heads * sizes["v_head_dim"]), "shared gate+up": (2 * shared, dim),
            "shared down": (dim, shared), "dense gate+up": (2 * sizes["intermediate_size"], dim),
            "dense down": (dim, sizes["intermediate_size"]), "lm_head": (sizes["vocab_size"], dim),
            "router (float32 out)": (sizes["n_routed_experts"], dim)}


@torch.inference_mode()
def dense_kernel_check(sizes: dict, device: str) -> list[dict]:
    """Each dense projection of a batch-1 decode step: time per call in a captured graph and bytes/s,
    cuBLAS for the bf16 ones (what the model runs), and for the router our float32-output GEMV
    (model/kernels/gemv.py) against torch's float32 product, with its error."""
    import torch.nn.functional as F

    from model.kernels.gemv import linear_float32_partials

    out = []
    for name, (n, k) in dense_shapes(sizes).items():
        weights = distinct_copies(lambda: torch.randn(n, k, device=device, dtype=torch.bfloat16), 2 * n * k)
        x = torch.randn(1, k, device=device, dtype=torch.bfloat16)
        row = {"matrix": name, "out": n, "in": k}
        if name.startswith("router"):
            torch_s = per_call_seconds(lambda w: F.linear(x.float(), w.float()), weights)
            ours_s = per_call_seconds(lambda w: linear_float32_partials(x, w).sum(0), weights)
            got = linear_float32_partials(x, weights[0]).sum(0)
            row |= {"ours_us": ours_s * 1e6, "torch_float32_us": torch_s * 1e6,
                    "error": relative_error(got, x.float() @ weights[0].float().T)}
        else:
            row["cublas_us"] = per_call_seconds(lambda w: F.linear(x, w), weights) * 1e6
        row["bytes_s"] = 2 * n * k / (row.get("ours_us") or row["cublas_us"]) * 1e6
        print("  " + json.dumps(row), flush=True)
        out.append(row)
    return out
