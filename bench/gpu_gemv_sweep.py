"""The expert GEMVs' launch configurations on V2-Lite-sized shapes (model/kernels/gemv.py), timed as a
decode step runs them: in a captured CUDA graph, 16 calls on different random experts, so the
weights come from HBM. The calls are the model's: the routed pairs' gate/up (6 pairs) and the
shared pairs' (2), each writing silu(gate) * up; the down projection of all 8, both as pairs
(`_gemv_kernel`, which torch then adds up) and added up with the residual in the same kernel
(`_gemv_sum_kernel`); and the fp8 gate/up and down (6 routed pairs). Every configuration's output is
checked against a float32 product first. The autotuners' lists in gemv.py keep configurations that
came within ~20% of the best here.

    python bench/gpu_gemv_sweep.py [--json timings.json] > bench/results/gpu_gemv_sweep.txt
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.kernels.gemv import (  # noqa: E402
    FP8_BLOCK,
    PairSum,
    _every_slot_product,
    _gemv_kernel,
    _gemv_sum_kernel,
    _next_power_of_2,
    _pair_sum,
    _shared_strides,
    quantize_fp8,
    shared_down,
    shared_gate_up,
)

EXPERTS, HIDDEN, DIM, TOP_K, SHARED = 64, 1408, 2048, 6, 2  # V2-Lite's experts
CASES = ("gate_up routed", "gate_up shared", "down pairs", "down summed", "gate_up fp8", "down fp8 pairs")
# (BLOCK_N, BLOCK_K, warps) tried: the pairs kernel's tiles are [BLOCK_N, BLOCK_K] (twice with gate/up),
# the summing kernel's [pairs, BLOCK_N, BLOCK_K]
CONFIGS = [c for c in itertools.product((4, 8, 16, 32), (128, 256, 512), (4, 8)) if c[0] * c[1] <= 8192]
SUM_CONFIGS = list(itertools.product((1, 2, 4, 8), (128, 256, 512), (4, 8)))


class Setup:
    def __init__(self, device: str) -> None:
        self.gate_up = torch.randn(EXPERTS, 2 * HIDDEN, DIM, device=device, dtype=torch.bfloat16) * 0.02
        self.down = torch.randn(EXPERTS, DIM, HIDDEN, device=device, dtype=torch.bfloat16) * 0.02
        self.fp8 = {"gate_up": quantize_fp8(self.gate_up), "down": quantize_fp8(self.down)}
        self.shared = {"gate_up": shared_gate_up(torch.randn(2 * SHARED * HIDDEN, DIM, device=device,
                                                             dtype=torch.bfloat16) * 0.02, SHARED),
                       "down": shared_down(torch.randn(DIM, SHARED * HIDDEN, device=device, dtype=torch.bfloat16) * 0.02,
                                           SHARED)}
        self.x = torch.randn(1, DIM, device=device, dtype=torch.bfloat16)
        self.hidden = torch.randn(TOP_K + SHARED, HIDDEN, device=device, dtype=torch.bfloat16)
        self.route_weights = torch.rand(1, TOP_K, device=device)
        self.residual = torch.randn(1, DIM, device=device, dtype=torch.bfloat16)
        self.id_sets = [torch.randperm(EXPERTS, device=device)[:TOP_K][None] for _ in range(16)]

    def case(self, name: str):
        """(configs, launch(config, ids) -> output, reference(ids) -> float32, bytes read) of one call."""
        stage = name.split()[0]
        fp8, summed, down = "fp8" in name, name.endswith("summed"), stage == "down"
        weights, scales = self.fp8[stage] if fp8 else (getattr(self, stage), None)
        shared = None if fp8 else self.shared[stage]
        pairs = TOP_K + (shared.count if shared is not None else 0)
        first_slot, num_slots = {"gate_up routed": (0, TOP_K), "gate_up shared": (TOP_K, SHARED)}.get(name, (0, pairs))
        n, k = weights.shape[1:]
        width = n if down else n // 2
        x = self.hidden[:pairs] if down else self.x
        out = torch.empty(1 if summed else pairs, width, device=x.device, dtype=torch.bfloat16)

        def launch(config: tuple, ids: torch.Tensor) -> torch.Tensor:
            block_n, block_k, warps = config
            shared_weight = shared.weight if shared is not None else weights
            if summed:
                _gemv_sum_kernel.fn[(1, triton.cdiv(n, block_n))](
                    x, weights, ids, shared_weight, self.route_weights, self.residual, out, 0, EXPERTS, n, k, TOP_K,
                    pairs, *_shared_strides(shared), HAS_SHARED=shared is not None, HAS_RESIDUAL=True,
                    PAIRS=_next_power_of_2(pairs), BLOCK_N=block_n, BLOCK_K=block_k, num_warps=warps, num_stages=3)
                return out
            _gemv_kernel.fn[(num_slots, triton.cdiv(width, block_n), 1)](
                x, weights, scales if scales is not None else x, ids, shared_weight, out, 0, EXPERTS, n, k, k, TOP_K,
                pairs, first_slot, num_slots, *_shared_strides(shared), ROUTED=True, HAS_SHARED=shared is not None,
                PAIR_INPUT=down, GLU_OUT=not down, FP8=fp8, SCALE_BLOCK=FP8_BLOCK, BLOCK_N=block_n,
                BLOCK_K=block_k, num_warps=warps, num_stages=3)
            return out[first_slot:first_slot + num_slots]

        def reference(ids: torch.Tensor) -> torch.Tensor:
            every_slot = _every_slot_product(x, weights, ids, 0, scales, shared, down)
            if summed:
                return _pair_sum(every_slot, PairSum(self.route_weights, self.residual))
            if not down:
                every_slot = torch.nn.functional.silu(every_slot[..., :width]) * every_slot[..., width:]
            return every_slot[0, first_slot:first_slot + num_slots]

        return SUM_CONFIGS if summed else CONFIGS, launch, reference, num_slots * n * k * weights.element_size()


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got.float() - want).norm() / want.norm()).item()


def sweep(setup: Setup, name: str) -> list[tuple[float, tuple, float]]:
    """(us per call, config, relative error) for every configuration, fastest first."""
    configs, launch, reference, _ = setup.case(name)
    want = reference(setup.id_sets[0])
    timings = []
    for config in configs:
        error = relative_error(launch(config, setup.id_sets[0]), want)
        for ids in setup.id_sets:  # compile and warm up outside the graph
            launch(config, ids)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for ids in setup.id_sets:
                launch(config, ids)
        us = triton.testing.do_bench(graph.replay, return_mode="median") * 1e3 / len(setup.id_sets)
        timings.append((us, config, error))
    return sorted(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, help="also write every timing here")
    args = parser.parse_args()
    setup = Setup("cuda")
    results = {}
    for name in CASES:
        timings = sweep(setup, name)
        read = setup.case(name)[3]
        results[name] = timings
        print(f"{name} ({read / 1e6:.1f} MB); best (us, (BLOCK_N, BLOCK_K, warps), TB/s, error):",
              [(round(us, 2), c, round(read / us / 1e6, 2), f"{e:.1e}") for us, c, e in timings[:6]],
              "worst:", (round(timings[-1][0], 2), timings[-1][1]), f"max error: {max(e for *_, e in timings):.1e}",
              flush=True)
    if args.json:
        args.json.write_text(json.dumps(results))


if __name__ == "__main__":
    import triton
    import triton.testing

    main()
