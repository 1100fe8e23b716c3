"""One decode step of a fixed batch size, captured once as a CUDA graph and replayed per token.

A decode step of a MoE model is hundreds of small kernels; launched one by one from Python the
GPU idles between them. Replaying a captured graph launches them all at once. A graph fixes every
shape and may not read device values on the host, so the model runs with `num_keys` (attention
over a fixed number of cache positions, masked per row) and its sync-free paths (GEMV or grouped
experts). Work the model puts on a second stream (the shared experts, `model/layers/moe.py`) is
captured with its fork and join.

Capture runs the step for real, writing the cache at position 0 of the captured slots: capture
before any sequence occupies those slots (at start-up).
"""

from __future__ import annotations

import torch
from torch import nn


class DecodeGraph:
    def __init__(self, model: nn.Module, batch_size: int, num_keys: int, device: torch.device) -> None:
        self.batch_size = batch_size
        self.tokens = torch.zeros(batch_size, 1, dtype=torch.long, device=device)
        self.positions = torch.zeros(batch_size, 1, dtype=torch.long, device=device)
        self.slots = torch.arange(batch_size, device=device)
        self.graph = torch.cuda.CUDAGraph()
        with torch.inference_mode():
            warmup = torch.cuda.Stream(device)  # the first runs allocate workspaces outside the graph
            warmup.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(warmup):
                for _ in range(2):
                    model(self.tokens, self.positions, self.slots, num_keys=num_keys)
            torch.cuda.current_stream(device).wait_stream(warmup)
            with torch.cuda.graph(self.graph):
                self.logits = model(self.tokens, self.positions, self.slots, num_keys=num_keys)

    def __call__(self, tokens: torch.Tensor, positions: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        """tokens, positions [B, 1], slots [B] -> logits [B, 1, vocab], a buffer the next call overwrites."""
        self.tokens.copy_(tokens, non_blocking=True)
        self.positions.copy_(positions, non_blocking=True)
        self.slots.copy_(slots, non_blocking=True)
        self.graph.replay()
        return self.logits

