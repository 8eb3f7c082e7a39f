"""INT8 symmetric per-output-channel weights (`int8_sq`, `int8_wo`) as ModelOpt exports them."""

from __future__ import annotations

import torch

INT8_MAX = 127.0


def quantize(w: torch.Tensor, amax: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """w [N, K] -> (weight int8 [N, K], weight_scale fp32 [N] = row amax / 127).

    q = clamp(round_half_even(w / scale), -128, 127), as ModelOpt's `to_quantized_weight`.
    """
    amax = w.abs().amax(dim=-1).float() if amax is None else amax.float()
    amax = torch.where(amax == 0, torch.full_like(amax, INT8_MAX), amax)
    scale = amax / INT8_MAX  # [N]
    return (w / scale[:, None]).round().clamp(-128, 127).to(torch.int8), scale


def dequantize(q: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """int8 [N, K], scale [N] -> [N, K]."""
    return (q.float() * scale.float()[:, None]).to(dtype)
