"""Batch-1 decode of our model alone, for measuring one change quickly: no transformers model, no
parity, one batch size. Random weights (normal, std 0.02 as transformers initialises them; norms 1),
projections merged as a GPU load merges them, layers compiled with torch.compile (the
`--compile` column of bench/gpu_moe.py), decode steps replayed from a CUDA graph.

    python bench/gpu_decode_step.py --config v2-lite [--no-compile] [--label NAME] [--out FILE]

Prints tok/s, ms per step, the share of the HBM bound (copy bandwidth measured in the same
process) and the per-kernel table of eager steps (bench/gpu_moe_kernels.py); with --out the same as
one JSON object appended to FILE (one line per run, so several processes can share it).
bench/gpu_moe.py remains the benchmark of record; this one is its batch-1 compiled row, minus the rest.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
from gpu_moe import copy_bandwidth, decode_step, our_decode_rate
from gpu_moe_kernels import kernel_breakdown
from gpu_moe_models import CONFIGS, MAX_SEQ_LEN, bytes_per_token

from model.config.deepseek import DeepseekConfig
from model.models.deepseek_v3 import DeepseekV3ForCausalLM
from model.runtime import Runtime


@torch.no_grad()  # not inference_mode: the caches are written in place later, outside it
def random_model(sizes: dict, device: str) -> DeepseekV3ForCausalLM:
    import transformers

    hf_config = transformers.DeepseekV3Config(**sizes, max_position_embeddings=4096)
    runtime = Runtime(dtype=torch.bfloat16, device=device, max_batch_size=1, max_seq_len=MAX_SEQ_LEN)
    torch.manual_seed(0)
    with torch.device(device):
        model = DeepseekV3ForCausalLM(DeepseekConfig.from_hf(hf_config.to_dict()), runtime)
    for name, param in model.named_parameters():
        if name.endswith("norm.weight"):
            param.fill_(1.0)
        else:
            param.normal_(0.0, hf_config.initializer_range)
    model.merge_projections()
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="v2-lite", choices=[c for c in CONFIGS if c != "tiny"])
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--label", default="")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    device, sizes = "cuda", CONFIGS[args.config]
    bandwidth = copy_bandwidth(device)
    model = random_model(sizes, device)
    if not args.no_compile:
        for layer in model.model.layers:
            layer.compile(dynamic=False)
    rates = []
    for _ in range(3):  # three timed runs of 100 steps over one captured graph: their spread is the noise
        model.reset_cache()
        step = decode_step(model, 1, device)
        rates.append(our_decode_rate(model, step, 1, sizes["vocab_size"], device))
        del step
    bound, median = bandwidth / bytes_per_token(model, model.config), statistics.median(rates)
    kernels = kernel_breakdown(model, 1, sizes["vocab_size"], device)
    result = {"label": args.label, "config": args.config, "compiled": not args.no_compile,
              "gpu": torch.cuda.get_device_name(),
              "tok_s_runs": rates, "tok_s": median, "ms_per_step": 1e3 / median,
              "copy_bandwidth_bytes_s": bandwidth, "bound_tok_s": bound, "of_bound": median / bound,
              "kernel_launches": sum(r["calls_per_step"] for r in kernels), "kernels": kernels[:16]}
    print(f"{args.label or args.config}: {median:.1f} tok/s (runs {', '.join(f'{r:.1f}' for r in rates)}), "
          f"{result['ms_per_step']:.3f} ms/step, {100 * result['of_bound']:.1f}% of the {bound:.0f} tok/s bound, "
          f"{result['kernel_launches']:.0f} launches", flush=True)
    for row in kernels[:12]:
        print(f"  {row['us_per_step']:8.1f} us {row['calls_per_step']:5.0f}x  {row['kernel']}")
    if args.out:
        with args.out.open("a") as out:
            out.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
