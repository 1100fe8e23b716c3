"""DeepSeek-V3-architecture decode on one GPU: our runtime vs transformers, same random bf16 weights.

    python bench/gpu_moe.py [--configs v2-lite,v3-3layer] [--batches 1,8,32,64] [--compile] [--fp8]
    python bench/gpu_moe.py --parity-only                           # only the parity checks
    python bench/gpu_moe_plot.py bench/results/gpu_moe.json         # the plot, from a saved run

Per config, in one process: transformers' DeepseekV3ForCausalLM is built with random weights and
our model takes the very same tensors (no copy), then
  1. parity (bench/gpu_moe_parity.py): logits of a 2-row prompt prefill and of 8 decode steps (ours
     eager and CUDA graph) against transformers' full forward, as ||ours - ref|| / ||ref||;
  2. decode tok/s at each batch size: transformers `generate` (greedy, its default cache) vs ours
     (prefill, then a captured CUDA graph per step with the argmax fed back on the device);
  3. the HBM bound at batch 1: weight bytes a decoded token must read / the measured copy bandwidth;
  4. where a step's time goes (bench/gpu_moe_kernels.py): per-kernel times of eager decode steps;
  5. with --fp8, the same model with its routed experts stored in fp8 (RoutedExperts.store_fp8):
     its logits' distance from the bf16 ones, decode tok/s and its own bound (fp8 bytes).
Each config's results replace that config's entry in <out>/gpu_moe.json (the others stay, each
with the copy bandwidth and machine of its own run); parity goes to gpu_moe_parity.json and the
fp8 comparison to gpu_moe_fp8.json the same way.
`--device cpu --configs tiny` runs the same logic on the CPU, eager steps instead of graphs, no
kernel table (a check of this script, not a measurement).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import time
from pathlib import Path

import torch
from gpu_moe_kernels import dense_kernel_check, expert_kernel_check, kernel_breakdown
from gpu_moe_models import CONFIGS, MAX_SEQ_LEN, PROMPT_LEN, build_models, bytes_per_token
from gpu_moe_parity import our_logits, parity, parity_tokens, split_errors

HF_SHORT, HF_LONG = 8, 40  # decode rate of `generate` = (HF_LONG - HF_SHORT) / time difference


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


@torch.inference_mode()
def fp8_comparison(ours, result: dict, batches: list[int], device: str) -> dict:
    """The model just timed, its routed experts then stored in fp8 (what Runtime(fp8_experts=True)
    loads): logits of the parity prompt and steps against its bf16 ones (both eager, compiled layers
    run eagerly), decode tok/s at `batches`, and the batch-1 bound in bf16 bytes and in fp8 bytes."""
    vocab = result["sizes"]["vocab_size"]
    tokens = parity_tokens(vocab, device)
    with torch.compiler.set_stance("force_eager"):
        ours.reset_cache()
        bf16_logits = our_logits(ours, tokens)
        ours.store_experts_fp8()
        ours.reset_cache()
        fp8_logits = our_logits(ours, tokens)
    bandwidth = result["copy_bandwidth_bytes_s"]
    out = {"logits_vs_bf16": split_errors(fp8_logits, bf16_logits),
           "bf16_bytes_per_token_batch1": result["bytes_per_token_batch1"],
           "fp8_bytes_per_token_batch1": bytes_per_token(ours, ours.config)}
    out["bf16_bound_tok_s"] = bandwidth / out["bf16_bytes_per_token_batch1"]
    out["fp8_bound_tok_s"] = bandwidth / out["fp8_bytes_per_token_batch1"]
    bf16_rates = {row["batch"]: row.get("ours_compiled_tok_s", row["ours_tok_s"]) for row in result["decode"]}
    out["decode"] = []
    for batch in batches:
        ours.reset_cache()
        step = decode_step(ours, batch, device)
        row = {"batch": batch, "fp8_tok_s": our_decode_rate(ours, step, batch, vocab, device),
               "bf16_tok_s_same_run": bf16_rates.get(batch)}
        del step
        print(result["config"], "fp8", json.dumps(row), flush=True)
        out["decode"].append(row)
    if device != "cpu":
        kernels = kernel_breakdown(ours, 1, vocab, device)
        out["kernels_batch1"] = kernels[:12]
        out["kernel_launches_batch1"] = sum(r["calls_per_step"] for r in kernels)
    return out


def run_config(name: str, batches: list[int], device: str, compile_layers: bool, fp8_batches: list[int],
               bandwidth: float) -> dict:
    sizes = CONFIGS[name]
    result: dict = {"config": name, "sizes": sizes, "copy_bandwidth_bytes_s": bandwidth,
                    "parity": parity(sizes, device)}
    print(name, "parity", json.dumps(result["parity"]), flush=True)
    if device != "cpu":
        result["expert_gemv"] = expert_kernel_check(sizes, device)
        print(name, "expert GEMV", json.dumps(result["expert_gemv"]), flush=True)
        result["dense_gemv_batch1"] = dense_kernel_check(sizes, device)
        torch.cuda.empty_cache()
    reference, ours = build_models(sizes, device, max(*batches, 2))  # 2 rows: the fp8 logits check
    ours.merge_projections()
    result["parameters"] = sum(p.numel() for p in ours.parameters())
    result["bytes_per_token_batch1"] = bytes_per_token(ours, ours.config)
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
    if device != "cpu":
        kernels = kernel_breakdown(ours, 1, sizes["vocab_size"], device)
        result["kernels_batch1"] = kernels[:25]
        result["kernel_time_us_batch1"] = sum(r["us_per_step"] for r in kernels)
        result["kernel_launches_batch1"] = sum(r["calls_per_step"] for r in kernels)
        if compile_layers:
            compiled_rates(ours, result, batches, sizes["vocab_size"], device)
    if fp8_batches:
        del reference  # ours keeps its own fp8 stacks; the bf16 ones it shared go with the reference
        result["fp8"] = fp8_comparison(ours, result, fp8_batches, device)
    return result


def machine(device: str) -> dict:
    import transformers

    info = {"gpu": torch.cuda.get_device_name() if device != "cpu" else platform.processor() or "cpu",
            "torch": torch.__version__, "transformers": transformers.__version__}
    if device != "cpu":
        info["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                        capture_output=True, text=True, check=True).stdout.strip()
    return info


def save_entries(path: Path, about: dict, entries: dict) -> None:
    """Replaces these configs' entries of the results file at `path`, keeping the others."""
    saved = json.loads(path.read_text()) if path.exists() else {}
    configs = saved.get("configs", {})
    if isinstance(configs, list):  # the layout of runs before entries were kept per config
        configs = {}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(about | {"configs": configs | entries}, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="v2-lite,v3-3layer")
    parser.add_argument("--batches", default="1,8,32,64")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--compile", action="store_true", help="also time graphs over torch.compile'd layers")
    parser.add_argument("--fp8", default="", help="batch sizes to time with fp8 routed experts, e.g. 1")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--parity-only", action="store_true", help="only the parity checks (gpu_moe_parity.json)")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    fp8_batches = [int(b) for b in args.fp8.split(",") if b]
    about = machine(args.device)
    print(json.dumps(about), flush=True)
    if args.parity_only:
        checks = {name: parity(CONFIGS[name], args.device) for name in args.configs.split(",")}
        save_entries(args.out / "gpu_moe_parity.json", about, checks)
        print(json.dumps(checks))
        return
    bandwidth = copy_bandwidth(args.device)
    print(f"copy bandwidth {bandwidth / 1e12:.2f} TB/s", flush=True)
    for name in args.configs.split(","):
        result = run_config(name, batches, args.device, args.compile, fp8_batches, bandwidth) | {"machine": about}
        save_entries(args.out / "gpu_moe_parity.json", about, {name: result["parity"]})
        if "fp8" in result:
            save_entries(args.out / "gpu_moe_fp8.json", about, {name: result["fp8"] | {"machine": about}})
        save_entries(args.out / "gpu_moe.json", about, {name: result})
        bound = bandwidth / result["bytes_per_token_batch1"]
        for row in result["decode"]:
            compiled = f" (compiled {row['ours_compiled_tok_s']:7.1f})" if "ours_compiled_tok_s" in row else ""
            print(f"{name:10} batch {row['batch']:3}: ours {row['ours_tok_s']:9.1f}{compiled} tok/s  "
                  f"transformers {row['transformers_tok_s']:8.1f}  ratio {row['ratio']:6.1f}x"
                  + (f"  (bound {bound:.0f} tok/s)" if row["batch"] == 1 else ""), flush=True)
        for row in result.get("fp8", {}).get("decode", []):
            print(f"{name:10} batch {row['batch']:3}: fp8 experts {row['fp8_tok_s']:9.1f} tok/s "
                  f"(fp8-byte bound {result['fp8']['fp8_bound_tok_s']:.0f})", flush=True)


if __name__ == "__main__":
    main()
