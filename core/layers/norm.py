"""RMSNorm, with an optional fused residual add and Gemma's (1 + w) weight."""

from __future__ import annotations

import torch
from torch import nn

from ember.layers.fused import fused_kernels


class RMSNorm(nn.Module):
    """`forward(x)` -> normed x; `forward(x, residual)` -> (norm(x + residual), x + residual).

    Llama casts back to the input dtype before scaling by w; Gemma scales by (1 + w) in fp32 and then casts
    (`gemma=True`), matching the Hugging Face numerics of each family.
    """

    def __init__(self, hidden_size: int, eps: float = 1e-6, gemma: bool = False) -> None:
        super().__init__()
        self.eps = eps
        self.gemma = gemma
        self.weight = nn.Parameter(torch.zeros(hidden_size) if gemma else torch.ones(hidden_size))

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        if self.gemma:
            return (xf * (1.0 + self.weight.float())).to(x.dtype)
        return self.weight * xf.to(x.dtype)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        fused = fused_kernels(x)
        if fused is not None:   # one kernel instead of ~8 (add, pow, mean, rsqrt, casts, mul)
            return fused.rmsnorm(x, self.weight, self.eps, residual, self.gemma)
        if residual is None:
            return self._norm(x)
        x = x + residual
        return self._norm(x), x

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}, gemma={self.gemma}"
