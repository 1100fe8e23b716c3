"""Tensor + expert parallel decode of the V3-shaped model over the GPUs of one host (NCCL).

    NCCL_NVLS_ENABLE=0 torchrun --nproc-per-node N bench/gpu_parallel.py [--config v3-3layer] [--batches 1,32]

Every rank builds transformers' model with the same random weights (same seed), takes its logits
of a 2-row prompt as the reference, cuts our model sharing those weights down to its part
(model/parallel.py), checks prefill and decode logits against the reference, then times decode
steps (a CUDA graph per batch size, the all-reduces inside it). With N=1 nothing is cut: the
single-GPU baseline of the scaling efficiency = tok/s(N) / (N * tok/s(1)) for throughput, and
tok/s(N) / tok/s(1) for the batch-1 speed-up. Rank 0 writes bench/results/gpu_parallel_<N>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_moe import decode_step, our_decode_rate  # noqa: E402
from gpu_moe_models import CONFIGS, build_models  # noqa: E402
from gpu_moe_parity import our_logits, parity_tokens, split_errors  # noqa: E402

from model.parallel import init_from_env, shard_deepseek  # noqa: E402


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="v3-3layer")
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--device", default="cuda", help="cpu: gloo and eager steps, a check of this script")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    shard = init_from_env("gloo" if args.device == "cpu" else "nccl")
    device = "cpu" if args.device == "cpu" else f"cuda:{shard.rank}"
    if device != "cpu":
        torch.cuda.set_device(device)
    sizes = CONFIGS[args.config]
    reference, ours = build_models(sizes, device, max(batches + [2]))
    tokens = parity_tokens(sizes["vocab_size"], device)
    expected, whole = reference(tokens).logits.float(), our_logits(ours, tokens)
    shard_deepseek(ours, shard)
    del reference
    if device != "cpu":
        torch.cuda.empty_cache()
    ours.reset_cache()
    sharded = our_logits(ours, tokens)
    # vs the unsharded model (all-reduce order and bf16 partial sums are the only differences),
    # and vs transformers as the single-GPU bench reports it
    parity = {"vs_unsharded": split_errors(sharded, whole), "vs_transformers": split_errors(sharded, expected)}

    rows = []
    for batch in batches:
        ours.reset_cache()
        step = decode_step(ours, batch, device)
        rows.append({"batch": batch, "ours_tok_s": our_decode_rate(ours, step, batch, sizes["vocab_size"], device)})
        del step
    result = {"config": args.config, "world_size": shard.world_size, "parity": parity, "decode": rows,
              "device": torch.cuda.get_device_name() if device != "cpu" else "cpu",
              "weights_gib_per_rank": sum(p.numel() * p.element_size() for p in ours.parameters()) / 2**30}
    if shard.rank == 0:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"gpu_parallel_{shard.world_size}.json").write_text(json.dumps(result, indent=1))
        print(json.dumps(result), flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
