"""One int4 or int8 layer, CPU: torch's int4/int8 kernel vs our expanded path (weight expanded to bf16
for the call, then a bf16 GEMM) vs a plain bf16 F.linear (what transformers' nn.Linear runs on bf16
weights).

The shapes of the default 1.5B model (Qwen2.5-1.5B: q/o 1536x1536, k/v 256x1536, gate/up 8960x1536,
down 1536x8960, out x in), random weights, best of several runs. Prints a markdown table: the rows
from which the expanded path (expanded a ~1 MB slice at a time, then GEMMs) beats the kernel are the
break-even that `model/layers/linear.py` quotes.

    python bench/quant_gemm.py --scheme int4 --threads 1 --rows 1,16,64,128,200,400
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from any folder

from model.layers.linear import (  # noqa: E402
    EXPAND_FROM_ROWS, Int4WeightOnlyLinear, Int8WeightOnlyLinear, expands_quantized)

SHAPES = {"q/o": (1536, 1536), "k/v": (256, 1536), "gate/up": (8960, 1536), "down": (1536, 8960)}
HEAD = {"lm_head": (151936, 1536)}


def best_ms(fn, repeats: int = 7, budget_s: float = 3.0) -> float:
    fn()
    times, stop = [], time.perf_counter() + budget_s
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
        if time.perf_counter() > stop:
            break
    return min(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scheme", choices=("int4", "int8"), default="int4")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rows", default="1,16,64,128,200,400")
    parser.add_argument("--head", action="store_true", help="also the 151936x1536 LM head (slow)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [int(r) for r in args.rows.split(",")]
    generator = torch.Generator().manual_seed(0)

    print(f"{args.threads} thread(s), torch {torch.__version__}, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, AMX {torch.cpu._is_amx_tile_supported()}; "
          f"AVX512-BF16 {torch.cpu._is_avx512_bf16_supported()}; "
          f"quantized layers expand from {EXPAND_FROM_ROWS} rows: {expands_quantized(EXPAND_FROM_ROWS)}\n")
    print(f"| layer (out x in) | rows | {args.scheme} kernel ms | expanded path ms "
          "| bf16 F.linear ms | kernel / F.linear | expanded / F.linear |")
    print("|---|---|---|---|---|---|---|")
    with torch.inference_mode():
        for name, (n, k) in (SHAPES | (HEAD if args.head else {})).items():
            weight = torch.randn(n, k, generator=generator) * 0.05
            layer = (Int4WeightOnlyLinear(k, n, False, torch.bfloat16, group_size=32) if args.scheme == "int4"
                     else Int8WeightOnlyLinear(k, n, False, torch.bfloat16))
            layer.load_tensor("weight", weight)
            weight = weight.to(torch.bfloat16)
            for m in rows:
                x = torch.randn(m, k, generator=generator).to(torch.bfloat16)
                kernel = best_ms(lambda: layer.kernel_mm(x))
                expanded = best_ms(lambda: layer.expanded_mm(x))
                plain = best_ms(lambda: F.linear(x, weight))
                print(f"| {name} {n}x{k} | {m} | {kernel:.2f} | {expanded:.2f} | "
                      f"{plain:.2f} | {kernel / plain:.2f} | {expanded / plain:.2f} |", flush=True)


if __name__ == "__main__":
    main()
