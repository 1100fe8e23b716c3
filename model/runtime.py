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

    def __post_init__(self) -> None:
        if self.max_batch_size < 1 or self.max_seq_len < 1:
            raise ValueError(f"cache size must be positive, got {self.max_batch_size}x{self.max_seq_len}")
