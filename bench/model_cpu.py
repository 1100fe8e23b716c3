"""CPU decode/prefill speed of our dense runtime (bf16, int8, int4) vs transformers `generate` (bf16).

Same GGUF for all, batch 1, greedy, measured one after another in one run (the machine is shared:
compare the ratios, not the absolute numbers). Prints a markdown table, saves JSON to bench/results/.

    python bench/model_cpu.py --threads 2 --new-tokens 32
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script from any folder
DEFAULT_MODEL = REPO / "data" / "models" / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"


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


def bench_ours(path: Path, dtype: str, quant: str | None, prompt: list[int], new_tokens: int) -> dict:
    from model import load

    start = time.perf_counter()
    engine = load(path, dtype=dtype, quant=quant, max_batch_size=1, max_seq_len=len(prompt) + new_tokens + 8)
    load_s = time.perf_counter() - start
    tokens = torch.tensor([prompt])

    def run() -> tuple[float, float, list[int]]:
        engine.reset()
        t0 = time.perf_counter()
        next_token = engine.logits(tokens)[0, -1].argmax()
        prefill_s = time.perf_counter() - t0
        out, t0 = [], time.perf_counter()
        for i in range(new_tokens):
            out.append(int(next_token))
            next_token = engine.logits(next_token.view(1, 1), start_pos=len(prompt) + i)[0, -1].argmax()
        return prefill_s, time.perf_counter() - t0, out

    run()  # warm-up: first passes fault in memory and pick kernels
    prefill_s, decode_s, out = run()
    model = engine.model
    result = _row(f"ours {quant or dtype}", load_s, len(prompt), prefill_s, new_tokens, decode_s,
                  weight_bytes_per_token(model, model.model.embed_tokens.weight), out)
    del engine, model
    gc.collect()
    return result


def bench_transformers(path: Path, prompt: list[int], new_tokens: int) -> dict:
    import transformers

    start = time.perf_counter()
    model = transformers.AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.bfloat16,
        quantization_config=transformers.GgufConfig(gguf_file=path.name, dequantize=True)).eval()
    load_s = time.perf_counter() - start
    tokens = torch.tensor([prompt])
    greedy = dict(do_sample=False, pad_token_id=0)

    def run() -> tuple[float, float, list[int]]:
        with torch.inference_mode():
            prefill_s = _timed(lambda: model.generate(tokens, max_new_tokens=1, min_new_tokens=1, **greedy))
            t0 = time.perf_counter()
            out = model.generate(tokens, max_new_tokens=new_tokens + 1, min_new_tokens=new_tokens + 1, **greedy)
            total_s = time.perf_counter() - t0
        return prefill_s, total_s - prefill_s, out[0, len(prompt):len(prompt) + new_tokens].tolist()

    run()
    prefill_s, decode_s, out = run()
    result = _row("transformers bf16", load_s, len(prompt), prefill_s, new_tokens, decode_s,
                  weight_bytes_per_token(model, model.get_input_embeddings().weight), out)
    del model
    gc.collect()
    return result


def _row(name, load_s, prompt_len, prefill_s, new_tokens, decode_s, bytes_per_token, out) -> dict:
    return {"name": name, "load_s": round(load_s, 1), "prefill_tok_s": round(prompt_len / prefill_s, 1),
            "decode_tok_s": round(new_tokens / decode_s, 2), "weight_bytes_per_token": bytes_per_token,
            "read_bytes_s": bytes_per_token * new_tokens / decode_s, "tokens": out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--variants", default="int4,int8,bf16,transformers")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(args.model.parent), gguf_file=args.model.name)
    text = "Summarise the following passage in one sentence.\n" + "The library opens at nine and closes at five. " * 64
    prompt = tokenizer.encode(text)[: args.prompt_tokens]
    bandwidth = copy_bandwidth()

    rows = []
    for variant in args.variants.split(","):
        if variant == "transformers":
            rows.append(bench_transformers(args.model, prompt, args.new_tokens))
        else:
            quant = None if variant == "bf16" else variant
            rows.append(bench_ours(args.model, "bfloat16", quant, prompt, args.new_tokens))
        print(f"done: {rows[-1]['name']}", flush=True)

    baseline = next((r for r in rows if r["name"].startswith("transformers")), None)
    print(f"\n{args.model.name}, batch 1, {args.threads} threads, prompt {len(prompt)} tokens, "
          f"{args.new_tokens} new tokens, {platform.processor() or platform.machine()}, "
          f"copy bandwidth {bandwidth / 1e9:.1f} GB/s\n")
    print("| runtime | load s | prefill tok/s | decode tok/s | decode vs transformers | weights read/token | "
          "of copy bandwidth |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = f"{r['decode_tok_s'] / baseline['decode_tok_s']:.2f}x" if baseline else "-"
        print(f"| {r['name']} | {r['load_s']} | {r['prefill_tok_s']} | {r['decode_tok_s']} | {ratio} | "
              f"{r['weight_bytes_per_token'] / 1e6:.0f} MB | {r['read_bytes_s'] / bandwidth:.0%} |")
    results = REPO / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    out = results / f"model_cpu_{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps({"model": str(args.model.name), "threads": args.threads, "prompt_tokens": len(prompt),
                               "new_tokens": args.new_tokens, "copy_bandwidth_bytes_s": bandwidth, "rows": rows},
                              indent=2))
    print(f"\nsaved {out}")


if __name__ == "__main__":
    main()
