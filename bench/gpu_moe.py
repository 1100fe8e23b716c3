"""DeepSeek-V3-architecture decode on one GPU: our runtime vs transformers, same random bf16 weights.

    python bench/gpu_moe.py [--configs v2-lite,v3-3layer] [--batches 1,8,32,64] [--out DIR]
    python bench/gpu_moe.py --parity-only                           # only the parity checks
    python bench/gpu_moe.py --plot bench/results/gpu_moe.json     # the plot, from a saved run

Per config, in one process: transformers' DeepseekV3ForCausalLM is built with random weights and
our model takes the very same tensors (no copy), then
  1. parity: logits of a 2-row prompt prefill and of 8 decode steps (ours eager and CUDA graph)
     against transformers' full forward, as ||ours - ref|| / ||ref||;
  2. decode tok/s at each batch size: transformers `generate` (greedy, its default cache) vs ours
     (prefill, then a captured CUDA graph per step with the argmax fed back on the device);
  3. the HBM bound at batch 1: weight bytes a decoded token must read / the measured copy bandwidth;
  4. where a step's time goes: per-kernel times of eager decode steps (torch.profiler).
`--device cpu --configs tiny` runs the same logic on the CPU, eager steps instead of graphs, no
kernel table (a check of this script, not a measurement).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.config.deepseek import DeepseekConfig  # noqa: E402
from model.models.deepseek_v3 import DeepseekV3ForCausalLM  # noqa: E402
from model.runtime import Runtime  # noqa: E402

_MLA = {"kv_lora_rank": 512, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128}
CONFIGS = {
    # DeepSeek-V2-Lite's sizes in the V3 architecture (15.7 B parameters).
    "v2-lite": {"vocab_size": 102400, "hidden_size": 2048, "intermediate_size": 10944,
                "moe_intermediate_size": 1408, "num_hidden_layers": 27, "num_attention_heads": 16,
                "num_key_value_heads": 16, "q_lora_rank": None, "n_routed_experts": 64,
                "num_experts_per_tok": 6, "n_shared_experts": 2, "n_group": 1, "topk_group": 1,
                "first_k_dense_replace": 1, "routed_scaling_factor": 1.0, "norm_topk_prob": False, **_MLA},
    # DeepSeek-V3 at full width, cut to 3 layers (25.5 B parameters).
    "v3-3layer": {"vocab_size": 129280, "hidden_size": 7168, "intermediate_size": 18432,
                  "moe_intermediate_size": 2048, "num_hidden_layers": 3, "num_attention_heads": 128,
                  "num_key_value_heads": 128, "q_lora_rank": 1536, "n_routed_experts": 256,
                  "num_experts_per_tok": 8, "n_shared_experts": 1, "n_group": 8, "topk_group": 4,
                  "first_k_dense_replace": 1, "routed_scaling_factor": 2.5, "norm_topk_prob": True, **_MLA},
    "tiny": {"vocab_size": 512, "hidden_size": 64, "intermediate_size": 128, "moe_intermediate_size": 32,
             "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 4, "q_lora_rank": 32,
             "kv_lora_rank": 16, "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 16,
             "n_routed_experts": 16, "num_experts_per_tok": 4, "n_shared_experts": 1, "n_group": 4,
             "topk_group": 2, "first_k_dense_replace": 1, "routed_scaling_factor": 2.5, "norm_topk_prob": True},
}
PROMPT_LEN, PARITY_STEPS, MAX_SEQ_LEN = 32, 8, 256
HF_SHORT, HF_LONG = 8, 40  # decode rate of `generate` = (HF_LONG - HF_SHORT) / time difference


def build_models(sizes: dict, device: str, max_batch_size: int, dtype: torch.dtype = torch.bfloat16):
    """(transformers model, ours) holding the same weight tensors (same seed: same weights on every rank)."""
    import transformers

    hf_config = transformers.DeepseekV3Config(**sizes, max_position_embeddings=4096)
    torch.manual_seed(0)
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            reference = transformers.DeepseekV3ForCausalLM(hf_config).eval()
    finally:
        torch.set_default_dtype(default_dtype)
    return reference, ours_sharing(reference, device, max_batch_size)


def ours_sharing(reference: nn.Module, device: str, max_batch_size: int) -> nn.Module:
    """Our model over the reference's weight tensors (its dtype; caches on `device`)."""
    dtype = reference.dtype
    runtime = Runtime(dtype=dtype, device=device, max_batch_size=max_batch_size, max_seq_len=MAX_SEQ_LEN)
    with torch.device("meta"):  # weights come from the reference; caches are made on runtime.device
        ours = DeepseekV3ForCausalLM(DeepseekConfig.from_hf(reference.config.to_dict()), runtime)
    share_weights(reference, ours)
    return ours.eval()


def share_weights(reference: nn.Module, ours: nn.Module) -> None:
    """Points every parameter of ours at the reference tensor of the same name (the names are the
    checkpoints' own, and both stack the experts as gate_up [E, 2I, D] / down [E, D, I])."""
    theirs = reference.state_dict()
    for name, _ in list(ours.named_parameters()):
        module_name, _, param_name = name.rpartition(".")
        module = ours.get_submodule(module_name)
        module._parameters[param_name] = nn.Parameter(theirs[name].detach(), requires_grad=False)
    for name, buffer in ours.named_buffers():
        if name in theirs:  # the router's correction bias; caches and rope tables are ours alone
            buffer.copy_(theirs[name])


def relative_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return ((ours.float() - ref.float()).norm() / ref.float().norm()).item()


def parity_tokens(vocab: int, device: str) -> torch.Tensor:
    return torch.randint(0, vocab, (2, PROMPT_LEN + PARITY_STEPS), generator=torch.Generator().manual_seed(1)).to(device)


@torch.inference_mode()
def our_logits(ours, tokens: torch.Tensor, step=None) -> torch.Tensor:
    """Logits of a prefill of the first PROMPT_LEN tokens, then one decode step per further token
    (through `step`, e.g. a CUDA graph, when given)."""
    batch, device = tokens.shape[0], tokens.device
    slots = torch.arange(batch, device=device)
    out = [ours(tokens[:, :PROMPT_LEN], torch.arange(PROMPT_LEN, device=device).expand(batch, -1), slots)]
    for pos in range(PROMPT_LEN, tokens.shape[1]):
        token, position = tokens[:, pos:pos + 1], torch.full((batch, 1), pos, device=device)
        out.append((step or ours)(token, position, slots).clone())
    return torch.cat(out, dim=1)


def split_errors(got: torch.Tensor, want: torch.Tensor) -> dict:
    return {"prefill": relative_error(got[:, :PROMPT_LEN], want[:, :PROMPT_LEN]),
            "decode": [relative_error(got[:, p:p + 1], want[:, p:p + 1]) for p in range(PROMPT_LEN, got.shape[1])]}


@torch.inference_mode()
def parity(sizes: dict, device: str) -> dict:
    """Float32: ours (per-expert loop, no graph) vs transformers, an exactness check of the logic.
    bfloat16: ours eager and through a CUDA graph vs transformers, and both vs the float32 logits
    of the same weights (random routers make near-tied expert choices, which bf16 rounding flips
    differently in any two implementations; the distance to float32 says which is more accurate)."""
    tokens = parity_tokens(sizes["vocab_size"], device)
    reference, ours = build_models(sizes, device, 2, torch.float32)
    ours.merge_projections()  # as load_model does on a GPU
    exact = reference(tokens).logits.float()
    result = {"float32": split_errors(our_logits(ours, tokens), exact)}
    del ours
    reference = reference.to(torch.bfloat16)  # the same weights, rounded
    ours = ours_sharing(reference, device, 2)
    ours.merge_projections()
    theirs = reference(tokens).logits.float()
    eager = our_logits(ours, tokens)
    result["bfloat16_eager"] = split_errors(eager, theirs)
    result["bfloat16_vs_float32"] = {"ours": split_errors(eager, exact), "transformers": split_errors(theirs, exact)}
    if device != "cpu":
        from model.engine.cuda_graph import DecodeGraph

        ours.reset_cache()
        graph = DecodeGraph(ours, 2, MAX_SEQ_LEN, torch.device(device))
        result["bfloat16_graph"] = split_errors(our_logits(ours, tokens, graph), theirs)
    return result


def timed(fn, device: str) -> float:
    if device != "cpu":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device != "cpu":
        torch.cuda.synchronize()
    return time.perf_counter() - start


@torch.inference_mode()
def transformers_decode_rate(reference, batch: int, vocab: int, device: str) -> float:
    prompt = torch.randint(0, vocab, (batch, PROMPT_LEN), device=device)

    def generate(n: int):
        return lambda: reference.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n,
                                          min_new_tokens=n, do_sample=False, pad_token_id=0)

    timed(generate(2), device)
    short, long = timed(generate(HF_SHORT), device), timed(generate(HF_LONG), device)
    return batch * (HF_LONG - HF_SHORT) / (long - short)


@torch.inference_mode()
def our_decode_rate(ours, step, batch: int, vocab: int, device: str, steps: int = 100) -> float:
    slots = torch.arange(batch, device=device)
    prompt = torch.randint(0, vocab, (batch, PROMPT_LEN), device=device)
    logits = ours(prompt, torch.arange(PROMPT_LEN, device=device).expand(batch, -1), slots)
    token = logits[:, -1:].argmax(-1)
    position = torch.full((batch, 1), PROMPT_LEN, device=device)

    def decode(n: int):
        def run():
            nonlocal token, position
            for _ in range(n):
                token = step(token, position, slots)[:, -1:].argmax(-1)
                position = position + 1
        return run

    timed(decode(3), device)
    return batch * steps / timed(decode(steps), device)


def decode_step(ours, batch: int, device: str):
    """The decode step to time: a captured CUDA graph, or on the CPU the same sync-free eager call."""
    if device == "cpu":
        return lambda tokens, positions, slots: ours(tokens, positions, slots, num_keys=MAX_SEQ_LEN)
    from model.engine.cuda_graph import DecodeGraph

    return DecodeGraph(ours, batch, MAX_SEQ_LEN, torch.device(device))


def copy_bandwidth(device: str) -> float:
    """Bytes read + written per second by a 4 GiB device-to-device copy (median of 10)."""
    source = torch.empty((4 if device != "cpu" else 1) << 30, dtype=torch.uint8, device=device).random_()
    target = torch.empty_like(source)
    target.copy_(source)
    times = [timed(lambda: target.copy_(source), device) for _ in range(10)]
    return 2 * source.numel() / statistics.median(times)


def bytes_per_token(ours: nn.Module, config: DeepseekConfig) -> int:
    """Weight bytes one decoded token reads at batch 1: all but the embedding table (one row of it)
    and the routed experts that were not chosen."""
    total = sum(p.numel() * p.element_size() for p in ours.parameters())
    embedding = ours.model.embed_tokens.weight
    total -= embedding.numel() * embedding.element_size() - embedding.shape[1] * embedding.element_size()
    for module in ours.modules():
        if hasattr(module, "gate_up_proj"):
            per_expert = sum(p[0].numel() * p.element_size() for p in (module.gate_up_proj, module.down_proj))
            total -= per_expert * (module.num_experts - config.num_experts_per_tok)
    return total


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


def compiled_rates(ours, result: dict, batches: list[int], vocab: int, device: str) -> None:
    """The same graphs over decoder layers compiled by torch.compile (Inductor fuses the small
    element-wise kernels between the GEMMs; one compile serves all layers of a batch size)."""
    started = time.perf_counter()
    # Layer 0 (dense MLP) and the MoE layers are two programs, times each batch size's shapes.
    torch._dynamo.config.recompile_limit = 64
    torch._dynamo.config.cache_size_limit = 64
    try:
        for layer in ours.model.layers:
            layer.compile(dynamic=False)
        for row in result["decode"]:
            ours.reset_cache()
            step = decode_step(ours, row["batch"], device)
            row["ours_compiled_tok_s"] = our_decode_rate(ours, step, row["batch"], vocab, device)
            del step
            print(result["config"], "compiled", row["batch"], row["ours_compiled_tok_s"], flush=True)
        kernels = kernel_breakdown(ours, 1, vocab, device)
        result["compiled_kernels_batch1"] = kernels[:25]
        result["compiled_kernel_launches_batch1"] = sum(r["calls_per_step"] for r in kernels)
    except Exception as error:  # a compiler failure leaves the uncompiled numbers standing
        result["compile_error"] = f"{type(error).__name__}: {error}"[:2000]
        print("compile failed:", result["compile_error"], flush=True)
    result["compile_seconds"] = time.perf_counter() - started


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
    """The decode-time expert GEMV (Triton) against a float32 torch product on random data, whole and
    as one rank's half of the experts, and its bandwidth vs the grouped GEMM on the same pairs."""
    from model.kernels.gemv import expert_gemv

    num_experts, dim, hidden, top_k = (sizes["n_routed_experts"], sizes["hidden_size"],
                                       sizes["moe_intermediate_size"], sizes["num_experts_per_tok"])
    weights = torch.randn(num_experts, 2 * hidden, dim, device=device, dtype=torch.bfloat16)
    x = torch.randn(top_k, dim, device=device, dtype=torch.bfloat16)
    ids = torch.randperm(num_experts, device=device)[:top_k]
    want = torch.bmm(weights[ids].float(), x.float()[:, :, None])[:, :, 0]
    half = num_experts // 2
    local_want = want.masked_fill(~(ids >= half)[:, None], 0)
    result = {"error": relative_error(expert_gemv(x, weights, ids), want),
              "error_second_half": relative_error(expert_gemv(x, weights[half:].contiguous(), ids, half), local_want)}
    id_sets = [torch.randperm(num_experts, device=device)[:top_k] for _ in range(16)]
    gemv_s = per_call_seconds(lambda i: expert_gemv(x, weights, i), id_sets)

    def grouped(i):
        order = i.sort()
        counts = torch.zeros(num_experts, dtype=torch.int64, device=device)
        counts.scatter_add_(0, i, torch.ones_like(i))
        torch._grouped_mm(x[order.indices], weights.transpose(1, 2), offs=counts.cumsum(0).to(torch.int32))

    grouped_s = per_call_seconds(grouped, id_sets)
    read = top_k * weights[0].numel() * weights.element_size()
    result |= {"bytes": read, "gemv_us": gemv_s * 1e6, "grouped_gemm_us": grouped_s * 1e6,
               "gemv_bytes_s": read / gemv_s, "grouped_gemm_bytes_s": read / grouped_s}
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


def run_config(name: str, batches: list[int], device: str, compile_layers: bool) -> dict:
    sizes = CONFIGS[name]
    result: dict = {"config": name, "sizes": sizes, "parity": parity(sizes, device)}
    print(name, "parity", json.dumps(result["parity"]), flush=True)
    if device != "cpu":
        result["expert_gemv"] = expert_kernel_check(sizes, device)
        print(name, "expert GEMV", json.dumps(result["expert_gemv"]), flush=True)
        result["dense_gemv_batch1"] = dense_kernel_check(sizes, device)
    if device != "cpu":
        torch.cuda.empty_cache()
    reference, ours = build_models(sizes, device, max(batches))
    ours.merge_projections()
    config = ours.config
    result["parameters"] = sum(p.numel() for p in ours.parameters())
    result["bytes_per_token_batch1"] = bytes_per_token(ours, config)
    result["decode"] = []
    for batch in batches:
        ours.reset_cache()
        step = decode_step(ours, batch, device)
        row = {"batch": batch, "ours_tok_s": our_decode_rate(ours, step, batch, sizes["vocab_size"], device),
               "transformers_tok_s": transformers_decode_rate(reference, batch, sizes["vocab_size"], device)}
        row["ratio"] = row["ours_tok_s"] / row["transformers_tok_s"]
        del step
        print(name, json.dumps(row), flush=True)
        result["decode"].append(row)
    if device == "cpu":
        return result
    kernels = kernel_breakdown(ours, 1, sizes["vocab_size"], device)
    result["kernels_batch1"] = kernels[:25]
    result["kernel_time_us_batch1"] = sum(r["us_per_step"] for r in kernels)
    result["kernel_launches_batch1"] = sum(r["calls_per_step"] for r in kernels)
    if compile_layers:
        compiled_rates(ours, result, batches, sizes["vocab_size"], device)
    del reference, ours
    torch.cuda.empty_cache()
    return result


def plot(results_path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.loads(results_path.read_text())
    runs = [r for r in data["configs"] if "decode" in r]
    fig, axes = plt.subplots(1, len(runs), figsize=(5.5 * len(runs), 4), squeeze=False)
    for ax, run in zip(axes[0], runs, strict=True):
        batches = [r["batch"] for r in run["decode"]]
        ax.plot(batches, [r["ours_tok_s"] for r in run["decode"]], "o-", label="Zhiku model/ (CUDA graph)")
        if all("ours_compiled_tok_s" in r for r in run["decode"]):
            ax.plot(batches, [r["ours_compiled_tok_s"] for r in run["decode"]], "^-",
                    label="Zhiku model/ (CUDA graph, compiled layers)")
        ax.plot(batches, [r["transformers_tok_s"] for r in run["decode"]], "s-", label="transformers generate")
        bound = data["copy_bandwidth_bytes_s"] / run["bytes_per_token_batch1"]
        ax.axhline(bound, ls="--", c="grey", label=f"HBM bound at batch 1 ({bound:.0f} tok/s)")
        ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="decoded tokens/s",
               title=f"{run['config']} ({run['parameters'] / 1e9:.1f} B params), {data['gpu']}")
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.legend(fontsize=8)
    out = Path("docs/gpu_moe.png")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="v2-lite,v3-3layer")
    parser.add_argument("--batches", default="1,8,32,64")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--compile", action="store_true", help="also time graphs over torch.compile'd layers")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--parity-only", action="store_true", help="only the parity checks (gpu_moe_parity.json)")
    parser.add_argument("--plot", type=Path, help="only draw docs/gpu_moe.png from this results file")
    args = parser.parse_args()
    if args.plot:
        print(plot(args.plot))
        return
    batches = [int(b) for b in args.batches.split(",")]
    gpu = torch.cuda.get_device_name() if args.device != "cpu" else "cpu"
    if args.parity_only:
        checks = {"gpu": gpu, "configs": {name: parity(CONFIGS[name], args.device) for name in args.configs.split(",")}}
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu_moe_parity.json").write_text(json.dumps(checks, indent=1))
        print(json.dumps(checks))
        return
    results = {"gpu": gpu, "torch": torch.__version__, "configs": [],
               "copy_bandwidth_bytes_s": copy_bandwidth(args.device)}
    print(f"copy bandwidth {results['copy_bandwidth_bytes_s'] / 1e12:.2f} TB/s", flush=True)
    import transformers

    results["transformers"] = transformers.__version__
    for name in args.configs.split(","):
        results["configs"].append(run_config(name, batches, args.device, args.compile))
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu_moe.json").write_text(json.dumps(results, indent=1))
    for run in results["configs"]:
        for row in run.get("decode", []):
            bound = results["copy_bandwidth_bytes_s"] / run["bytes_per_token_batch1"]
            compiled = f" (compiled {row['ours_compiled_tok_s']:7.1f})" if "ours_compiled_tok_s" in row else ""
            print(f"{run['config']:10} batch {row['batch']:3}: ours {row['ours_tok_s']:9.1f}{compiled} tok/s  "
                  f"transformers {row['transformers_tok_s']:8.1f}  ratio {row['ratio']:6.1f}x"
                  + (f"  ({row['ours_tok_s'] / bound:.0%} of the {bound:.0f} tok/s HBM bound)"
                     if row["batch"] == 1 else ""))


if __name__ == "__main__":
    main()
