"""How a model runs (dtype, device, cache size), passed down to every module; no process-wide state."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Runtime:
    dtype: torch.dtype
    device: str
    max_batch_size: int
    max_seq_len: int
    # Routed experts stored as float8_e4m3fn with 128 x 128 tile scales once loaded (model/layers/moe.py
    # RoutedExperts.store_fp8): half the bytes per decoded token; made for Hopper GPUs, correct anywhere.
    fp8_experts: bool = False

    def __post_init__(self) -> None:
        if self.max_batch_size < 1 or self.max_seq_len < 1:
            raise ValueError(f"cache size must be positive, got {self.max_batch_size}x{self.max_seq_len}")
