"""FP8 E4M3 weights as ModelOpt exports them: per-tensor (`fp8`) or per output channel (`fp8_pc_pt`)."""

from __future__ import annotations

import torch

E4M3_MAX = 448.0


def _safe_amax(amax: torch.Tensor) -> torch.Tensor:
    # ModelOpt's export replaces a zero amax by maxbound (scale 1.0) so scales stay positive.
    return torch.where(amax == 0, torch.full_like(amax, E4M3_MAX), amax)


def quantize_per_tensor(w: torch.Tensor, amax: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """w [N, K] -> (weight float8_e4m3fn [N, K], weight_scale fp32 scalar = amax / 448).

    w / scale is computed in fp32 and cast to e4m3fn (round to nearest even); |w / scale| <= 448 by construction.
    """
    amax = _safe_amax(w.abs().amax().float() if amax is None else amax.float())
    scale = amax / E4M3_MAX
    return (w.float() / scale).to(torch.float8_e4m3fn), scale  # fp32 division, as ModelOpt's export ([1] scale)


def quantize_per_channel(w: torch.Tensor, amax: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """w [N, K] -> (weight float8_e4m3fn [N, K], weight_scale fp32 [N] = row amax / 448)."""
    amax = _safe_amax(w.abs().amax(dim=-1).float() if amax is None else amax.float())
    scale = amax / E4M3_MAX  # [N]
    return (w / scale[:, None]).to(torch.float8_e4m3fn), scale


def cast(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Static-scale FP8: clamp(x / scale, -448, 448) computed in fp32, cast to e4m3fn (round to nearest even)."""
    return (x.float() / scale).clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn)


def dequantize(q: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """float8 [N, K] with a scalar or [N] scale -> [N, K] in `dtype`."""
    scale = scale.float()
    if scale.ndim == 1 and scale.numel() == q.shape[0] and scale.numel() != 1:
        scale = scale[:, None]
    return (q.float() * scale).to(dtype)
