"""CPU decode/prefill speed and memory of our dense runtime (bf16, int8, int4) vs transformers
`generate` (bf16) and llama.cpp (llama-cpp-python, built from its PyPI source package) on the same GGUF.

Batch 1, greedy, every runtime in its own child process (so each one's peak RSS is its own), one
after another in one run, for each thread count (the machine is shared: compare the ratios, not the
absolute numbers). Prints a markdown table, saves JSON to bench/results/ and a PNG to docs/model_cpu.png.

    python bench/model_cpu.py --threads 1,2 --prompt-tokens 400 --new-tokens 64 \\
        --variants int4,int4-torch-gemv,int8,bf16,transformers,llama.cpp

(`int4-torch-gemv`: int4 decoding through torch's int4 kernel instead of model/native's GEMV.)

llama.cpp is not a dependency of Zhiku; for its row: `pip install -c constraints.txt llama-cpp-python==0.3.36`
(compiles llama.cpp for this CPU, ~15 minutes on 2 cores). On the Xeon VMs that build (-march=native)
died with "Illegal instruction" at load; build it without native flags there (~12 minutes on 2 cores):
`CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON -DGGML_AVX2=ON
-DGGML_FMA=ON -DGGML_F16C=ON" pip install -c constraints.txt --no-cache-dir llama-cpp-python==0.3.36`.

Time to first token (TTFT) = the prompt's forward + choosing the first token; prefill tok/s = prompt
tokens / TTFT; decode tok/s = the next new_tokens - 1 tokens over their time.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script from any folder
DEFAULT_MODEL = REPO / "data" / "models" / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
PROMPT_TEXT = "Summarise the following passage in one sentence.\n" + "The library opens at nine and closes at five. " * 512
WARMUP_PROMPT_TOKENS = 32  # a short first pass faults the weights in and picks kernels


def copy_bandwidth(num_bytes: int = 512 << 20, repeats: int = 5) -> float:
    """Bytes/s moved (read + write) by a large tensor copy: the practical memory-bandwidth bound."""
    src = torch.ones(num_bytes // 4, dtype=torch.float32)
    dst = torch.empty_like(src)
    dst.copy_(src)
    best = min(_timed(lambda: dst.copy_(src)) for _ in range(repeats))
    return 2 * num_bytes / best


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def weight_bytes_per_token(model: torch.nn.Module, embedding: torch.Tensor) -> int:
    """Bytes of weights one decode step reads: every parameter/buffer except the KV cache and the
    embedding table (one row of it is read)."""
    seen, total = set(), 0
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if "cache" in name or t.data_ptr() in seen or t.data_ptr() == embedding.data_ptr():
            continue
        seen.add(t.data_ptr())
        total += t.numel() * t.element_size()
    return total


def bench_ours(path: Path, quant: str | None, prompt: list[int], new_tokens: int) -> dict:
    from model import load

    start = time.perf_counter()
    engine = load(path, dtype="bfloat16", quant=quant, max_batch_size=1, max_seq_len=len(prompt) + new_tokens + 8)
    load_s = time.perf_counter() - start
    model, slots = engine.model, torch.tensor([0])

    @torch.inference_mode()
    def run(tokens: list[int], count: int) -> tuple[float, float, list[int]]:
        engine.reset()
        t0 = time.perf_counter()
        # The prefill generation runs (model/engine/scheduler.py): LM head on the last position only.
        logits = model(torch.tensor([tokens]), torch.arange(len(tokens))[None], slots, last_only=True)
        out = [int(logits[0, -1].argmax())]
        t1 = time.perf_counter()
        for i in range(count - 1):
            out.append(int(engine.logits(torch.tensor([[out[-1]]]), start_pos=len(tokens) + i)[0, -1].argmax()))
        return t1 - t0, time.perf_counter() - t1, out

    run(prompt[:WARMUP_PROMPT_TOKENS], 4)
    ttft_s, decode_s, out = run(prompt, new_tokens)
    row = _row(f"ours {quant or 'bf16'}", load_s, len(prompt), ttft_s, new_tokens, decode_s,
               weight_bytes_per_token(model, model.model.embed_tokens.weight), out)
    if quant:  # which path this process's prefill took (model/layers/linear.py decides per CPU)
        from model import native
        from model.layers.linear import expands_quantized

        expansion = "model/native" if native.SUPPORTED else "torch ops"
        row["prefill_path"] = (f"bf16 GEMM on the weight expanded by {expansion}" if expands_quantized(len(prompt))
                               else f"{quant} kernel")
    return row


def bench_transformers(path: Path, prompt: list[int], new_tokens: int) -> dict:
    import transformers

    start = time.perf_counter()
    model = transformers.AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.bfloat16,
        quantization_config=transformers.GgufConfig(gguf_file=path.name, dequantize=True)).eval()
    load_s = time.perf_counter() - start

    class StepClock(transformers.LogitsProcessor):
        """Called once per forward, before the token is chosen: timestamps every step."""

        def __init__(self) -> None:
            self.times: list[float] = []

        def __call__(self, input_ids, scores):
            self.times.append(time.perf_counter())
            return scores

    def run(tokens: list[int], count: int) -> tuple[float, float, list[int]]:
        clock = StepClock()
        with torch.inference_mode():
            t0 = time.perf_counter()
            out = model.generate(torch.tensor([tokens]), max_new_tokens=count, min_new_tokens=count, do_sample=False,
                                 pad_token_id=0, logits_processor=transformers.LogitsProcessorList([clock]))
            end = time.perf_counter()
        # The last step's choosing and bookkeeping counts as decode, as it does for the others.
        return clock.times[0] - t0, end - clock.times[0], out[0, len(tokens):].tolist()

    run(prompt[:WARMUP_PROMPT_TOKENS], 4)
    ttft_s, decode_s, out = run(prompt, new_tokens)
    return _row("transformers bf16", load_s, len(prompt), ttft_s, new_tokens, decode_s,
                weight_bytes_per_token(model, model.get_input_embeddings().weight), out)


def bench_llama_cpp(path: Path, prompt: list[int], new_tokens: int, threads: int) -> dict:
    try:
        from llama_cpp import Llama
    except ImportError:
        raise SystemExit("the llama.cpp row needs llama-cpp-python (see this script's docstring)") from None

    start = time.perf_counter()
    llm = Llama(str(path), n_ctx=len(prompt) + new_tokens + 8, n_threads=threads, n_threads_batch=threads,
                n_batch=max(512, len(prompt)), verbose=False)
    load_s = time.perf_counter() - start

    import llama_cpp
    import numpy as np

    def last_logits_argmax() -> int:
        # `Llama.scores` stays empty unless logits_all=True, which would run the LM head over the
        # whole prompt; the context's own logits of the last position are what a generation reads.
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),))
        return int(logits.argmax())

    def run(tokens: list[int], count: int) -> tuple[float, float, list[int]]:
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(tokens)
        out = [last_logits_argmax()]
        t1 = time.perf_counter()
        for _ in range(count - 1):
            llm.eval([out[-1]])
            out.append(last_logits_argmax())
        return t1 - t0, time.perf_counter() - t1, out

    run(prompt[:WARMUP_PROMPT_TOKENS], 4)
    ttft_s, decode_s, out = run(prompt, new_tokens)
    # Bytes per decoded token: the file's tensors minus the embedding table when a separate output
    # matrix exists (only one row of the table is read); a tied table is read whole as the LM head.
    from gguf import GGUFReader

    tensors = GGUFReader(str(path)).tensors
    embedding = next(t for t in tensors if t.name == "token_embd.weight")
    output = next((t for t in tensors if t.name == "output.weight"), None)
    read = sum(int(t.n_bytes) for t in tensors) - (int(embedding.n_bytes) if output is not None else 0)
    return _row("llama.cpp", load_s, len(prompt), ttft_s, new_tokens, decode_s, read, out)


def _row(name, load_s, prompt_len, ttft_s, new_tokens, decode_s, bytes_per_token, out) -> dict:
    """Called while the runtime is still loaded, so `rss_bytes` is what it holds while serving."""
    decode_tok_s = (new_tokens - 1) / decode_s
    gc.collect()
    return {"name": name, "load_s": round(load_s, 1), "ttft_s": round(ttft_s, 2), "rss_bytes": _resident_bytes(),
            "prefill_tok_s": round(prompt_len / ttft_s, 1), "decode_tok_s": round(decode_tok_s, 2),
            "weight_bytes_per_token": bytes_per_token, "read_bytes_s": bytes_per_token * decode_tok_s, "tokens": out}


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _resident_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def prompt_tokens(model: Path, count: int) -> list[int]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model.parent), gguf_file=model.name)
    return tokenizer.encode(PROMPT_TEXT)[:count]


def run_child(args: argparse.Namespace) -> None:
    """One variant at one thread count in this process; its row as JSON on the last stdout line."""
    torch.set_num_threads(args.threads)
    prompt = [int(t) for t in args.prompt_ids.split(",")]
    if args.child == "transformers":
        row = bench_transformers(args.model, prompt, args.new_tokens)
    elif args.child == "llama.cpp":
        row = bench_llama_cpp(args.model, prompt, args.new_tokens, args.threads)
    elif args.child == "int4-torch-gemv":
        # Decode through torch's int4 kernel, as before model/native's GEMV: that GEMV's gain in one run.
        from model import native

        native.GEMV_MAX_ROWS = 0
        row = bench_ours(args.model, "int4", prompt, args.new_tokens) | {"name": "ours int4, torch's decode kernel"}
    else:
        row = bench_ours(args.model, None if args.child == "bf16" else args.child, prompt, args.new_tokens)
    row |= {"threads": args.threads, "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    print(json.dumps(row))


def run_variant(args: argparse.Namespace, variant: str, threads: int, prompt: list[int]) -> dict:
    command = [sys.executable, __file__, "--child", variant, "--threads", str(threads), "--model", str(args.model),
               "--prompt-ids", ",".join(map(str, prompt)), "--new-tokens", str(args.new_tokens)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{variant} at {threads} threads failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def print_table(rows: list[dict], bandwidth: dict[int, float]) -> None:
    print("| threads | runtime | load s | TTFT s | prefill tok/s | prefill vs transformers | decode tok/s | "
          "decode vs transformers | decode vs llama.cpp | weights read/token | of copy bandwidth | RSS | peak RSS |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        same = [b for b in rows if b["threads"] == r["threads"]]
        hf = next((b for b in same if b["name"].startswith("transformers")), None)
        cpp = next((b for b in same if b["name"] == "llama.cpp"), None)

        def ratio(base, key):
            return f"{r[key] / base[key]:.2f}x" if base else "-"

        print(f"| {r['threads']} | {r['name']} | {r['load_s']} | {r['ttft_s']} | {r['prefill_tok_s']} | "
              f"{ratio(hf, 'prefill_tok_s')} | {r['decode_tok_s']} | {ratio(hf, 'decode_tok_s')} | "
              f"{ratio(cpp, 'decode_tok_s')} | {r['weight_bytes_per_token'] / 1e6:.0f} MB | "
              f"{r['read_bytes_s'] / bandwidth[r['threads']]:.0%} | {r['rss_bytes'] / 1e9:.2f} GB | "
              f"{r['peak_rss_bytes'] / 1e9:.2f} GB |")


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, threads = result["rows"], sorted({r["threads"] for r in result["rows"]})
    names = list(dict.fromkeys(r["name"] for r in rows))
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    panels = [("prefill_tok_s", "prefill tok/s (higher is better)"), ("decode_tok_s", "decode tok/s (higher is better)"),
              ("rss_bytes", "resident memory while serving, GB")]
    width = 0.8 / len(threads)
    for ax, (key, title) in zip(axes, panels):
        for i, n in enumerate(threads):
            values = [next((r[key] for r in rows if r["name"] == name and r["threads"] == n), 0) for name in names]
            values = [v / 1e9 for v in values] if key == "rss_bytes" else values
            ax.bar([x + i * width for x in range(len(names))], values, width, label=f"{n} thread{'s' * (n > 1)}")
        ax.set_xticks([x + width * (len(threads) - 1) / 2 for x in range(len(names))], names, rotation=20)
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    axes[2].axhline(2.0, color="red", linestyle="--", linewidth=1, label="2 GB goal (ours int4)")
    axes[0].legend()
    axes[2].legend()
    figure.suptitle(f"{result['model']}, batch 1, prompt {result['prompt_tokens']} tokens, "
                    f"{result['new_tokens']} new tokens, {result['machine']}")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--threads", default="2", help="comma-separated thread counts, e.g. 1,2")
    parser.add_argument("--prompt-tokens", type=int, default=400)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--variants", default="int4,int4-torch-gemv,int8,bf16,transformers,llama.cpp")
    parser.add_argument("--plot", type=Path, default=REPO / "docs" / "model_cpu.png",
                        help="write a PNG of the results here (default: the one docs/benchmarks.md shows); '' for none")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--prompt-ids", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.threads = int(args.threads)
        return run_child(args)

    load_at_start = os.getloadavg()[0]
    thread_counts = [int(n) for n in args.threads.split(",")]
    prompt = prompt_tokens(args.model, args.prompt_tokens)
    bandwidth, rows = {}, []
    for threads in thread_counts:
        torch.set_num_threads(threads)
        bandwidth[threads] = copy_bandwidth()
        for variant in args.variants.split(","):
            rows.append(run_variant(args, variant, threads, prompt))
            print(f"done: {rows[-1]['name']}, {threads} threads", flush=True)

    machine = (f"{cpu_name()}, {os.cpu_count()} cores, AMX {'yes' if torch.cpu._is_amx_tile_supported() else 'no'}, "
               f"AVX512-BF16 {'yes' if torch.cpu._is_avx512_bf16_supported() else 'no'}, "
               f"load average {load_at_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end")
    print(f"\n{args.model.name}, batch 1, prompt {len(prompt)} tokens, {args.new_tokens} new tokens, "
          f"{machine}, copy bandwidth " + ", ".join(f"{bandwidth[n] / 1e9:.1f} GB/s at {n} threads" for n in thread_counts)
          + "\n")
    print_table(rows, bandwidth)
    result = {"model": args.model.name, "prompt_tokens": len(prompt), "new_tokens": args.new_tokens,
              "machine": machine, "copy_bandwidth_bytes_s": bandwidth, "rows": rows}
    results = REPO / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    out = results / f"model_cpu_{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"\nsaved {out}")
    if args.plot != Path(""):  # --plot ''
        plot(result, args.plot)
        print(f"plot {args.plot}")


if __name__ == "__main__":
    main()
