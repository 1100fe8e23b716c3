"""The expert GEMV's launch configurations on V2-Lite-sized shapes (model/kernels/gemv.py), timed as a
decode step runs them: in a captured CUDA graph, 16 calls on different random experts, so the
weights come from HBM. The autotuner's list in gemv.py keeps the configurations that came within
~20% of the best here.

    python bench/gpu_gemv_sweep.py [--stages 3] [--block-k 128,256,512] > bench/results/gpu_gemv_sweep.txt
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.kernels.gemv import FP8_BLOCK, _gemv_kernel, quantize_fp8, shared_down, shared_gate_up  # noqa: E402

EXPERTS, HIDDEN, DIM, TOP_K, SHARED = 64, 1408, 2048, 6, 2  # V2-Lite's experts


def main() -> None:
    import triton
    import triton.testing

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stages", default="3")
    parser.add_argument("--block-k", default="128,256,512")
    args = parser.parse_args()
    device = "cuda"
    gate_up = torch.randn(EXPERTS, 2 * HIDDEN, DIM, device=device, dtype=torch.bfloat16)
    down = torch.randn(EXPERTS, DIM, HIDDEN, device=device, dtype=torch.bfloat16)
    fp8 = {"gate_up": quantize_fp8(gate_up), "down": quantize_fp8(down)}
    shared = {"gate_up": shared_gate_up(torch.randn(2 * SHARED * HIDDEN, DIM, device=device, dtype=torch.bfloat16),
                                        SHARED),
              "down": shared_down(torch.randn(DIM, SHARED * HIDDEN, device=device, dtype=torch.bfloat16), SHARED)}
    inputs = {"gate_up": torch.randn(1, DIM, device=device, dtype=torch.bfloat16),
              "down": torch.randn(TOP_K + SHARED, 2 * HIDDEN, device=device, dtype=torch.bfloat16)}
    id_sets = [torch.randperm(EXPERTS, device=device)[:TOP_K][None] for _ in range(16)]
    configs = [c for c in itertools.product((8, 16, 32, 64), [int(k) for k in args.block_k.split(",")], (4, 8),
                                            [int(s) for s in args.stages.split(",")]) if c[0] * c[1] <= 16384]

    def launch(stage: str, use_fp8: bool, with_shared: bool, config: tuple, ids: torch.Tensor) -> None:
        block_n, block_k, warps, stages = config
        weights, scales = fp8[stage] if use_fp8 else (gate_up if stage == "gate_up" else down, None)
        operand = shared[stage] if with_shared else None
        pairs = TOP_K + (SHARED if with_shared else 0)
        n, k = weights.shape[1:]
        out = torch.empty(pairs, n, device=device, dtype=torch.bfloat16)
        _, _, expert_stride, row_stride, second_half, gap = operand if operand else (None,) + (0,) * 5
        x = inputs[stage]
        _gemv_kernel.fn[(pairs, triton.cdiv(n, block_n), 1)](
            x, weights, scales if scales is not None else x, ids, operand.weight if operand else weights, out, 0,
            EXPERTS, n, k, k, TOP_K, pairs, 0, pairs, expert_stride, row_stride, second_half, gap, ROUTED=True,
            HAS_SHARED=operand is not None, GLU=stage == "down", FP8=use_fp8, SCALE_BLOCK=FP8_BLOCK,
            BLOCK_N=block_n, BLOCK_K=block_k, num_warps=warps, num_stages=stages)

    for stage, use_fp8, with_shared in (("gate_up", False, False), ("gate_up", False, True), ("down", False, True),
                                        ("gate_up", True, False), ("down", True, False)):
        if stage == "down" and not with_shared:
            inputs["down"] = inputs["down"][:TOP_K]
        timings = []
        for config in configs:
            for ids in id_sets:  # compile and warm up outside the graph
                launch(stage, use_fp8, with_shared, config, ids)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                for ids in id_sets:
                    launch(stage, use_fp8, with_shared, config, ids)
            timings.append((triton.testing.do_bench(graph.replay, return_mode="median") * 1e3 / len(id_sets), config))
        timings.sort()
        pairs = TOP_K + (SHARED if with_shared else 0)
        n, k = (2 * HIDDEN, DIM) if stage == "gate_up" else (DIM, HIDDEN)
        read = pairs * n * k * (1 if use_fp8 else 2)
        print(f"{stage} {'fp8' if use_fp8 else 'bf16'}{' +shared' if with_shared else ''} ({pairs} pairs, "
              f"{read / 1e6:.1f} MB); best (us, (BLOCK_N, BLOCK_K, warps, stages), TB/s):",
              [(round(us, 2), c, round(read / us / 1e6, 2)) for us, c in timings[:6]],
              "worst:", (round(timings[-1][0], 2), timings[-1][1]), flush=True)


if __name__ == "__main__":
    main()
