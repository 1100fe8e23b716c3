"""RMSNorm, computed in float32 whatever the activation dtype (as the reference implementations do)."""

from __future__ import annotations

import torch
from torch import nn


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float, dtype: torch.dtype) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim, dtype=dtype), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)

    def load_tensor(self, name: str, tensor: torch.Tensor) -> None:
        if name != "weight" or tensor.shape != self.weight.shape:
            raise KeyError(f"RMSNorm expects weight {tuple(self.weight.shape)}, got {name} {tuple(tensor.shape)}")
        self.weight.data.copy_(tensor)

    def checkpoint_names(self) -> tuple[str, ...]:
        return ("weight",)

    def checkpoint_tensors(self) -> dict[str, torch.Tensor]:
        return {"weight": self.weight.data}
