"""NVFP4 weights (W4A4, group 16) in ModelOpt's unified HF checkpoint layout.

Layout: `weight` uint8 [N, K/2]; byte (n, j) holds element 2j in its low nibble and 2j+1 in its high nibble.
A nibble is sign (bit 3) + E2M1 magnitude code (bits 0-2) indexing E2M1_VALUES. `weight_scale`
float8_e4m3fn [N, K/16] per-block scales; `weight_scale_2` fp32 scalar = amax / (448 * 6).
w_hat = E2M1[q] * float(weight_scale) * weight_scale_2.

Rounding (ModelOpt `_cast_fp4`): nearest E2M1 value, ties to the even code (0.25 -> 0, 0.75 -> 1, 1.25 -> 1,
1.75 -> 2, 2.5 -> 2, 3.5 -> 4, 5 -> 4), magnitudes above 6 saturate to 6; the sign bit is `x < 0`, so a
negative value that rounds to zero is code 8 (-0) and an input -0.0 is code 0, as in ModelOpt.
"""

from __future__ import annotations

import torch

E2M1_MAX, E4M3_MAX = 6.0, 448.0
E2M1_VALUES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0)
_BOUNDS = (0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0)  # midpoints between magnitudes


def global_scale(w: torch.Tensor) -> torch.Tensor:
    """weight_scale_2 = amax / (448 * 6), fp32."""
    return w.abs().amax().float() / (E2M1_MAX * E4M3_MAX)


def block_scales(w: torch.Tensor, scale_2: torch.Tensor, block: int = 16) -> torch.Tensor:
    """[N, K] -> float8_e4m3fn [N, K/block]: block amax / (6 * scale_2), zeros -> 1, clamped to [2^-9, 448]."""
    n, k = w.shape
    amax = w.float().reshape(n, k // block, block).abs().amax(-1)
    s = amax / (E2M1_MAX * scale_2.float())
    s = torch.where(s == 0, torch.ones_like(s), s)
    return s.clamp(min=2**-9, max=E4M3_MAX).to(torch.float8_e4m3fn)


def e2m1_codes(x: torch.Tensor) -> torch.Tensor:
    """Scaled values -> uint8 codes 0..15 (ModelOpt's rounding, see module doc)."""
    mag = x.abs().float()
    bounds = torch.tensor(_BOUNDS, device=x.device)
    code = torch.searchsorted(bounds, mag, out_int32=True)  # ties go to the lower code...
    odd_tie = (mag.unsqueeze(-1) == bounds[[1, 3, 5]]).any(-1)  # ...except 0.75, 1.75, 3.5: up to the even code
    sign = x < 0
    return (code + odd_tie.int() + sign.int() * 8).to(torch.uint8)


def quantize(w: torch.Tensor, block: int = 16, scale_2: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """w [N, K] -> (weight uint8 [N, K/2], weight_scale float8_e4m3fn [N, K/block], weight_scale_2 fp32 [])."""
    n, k = w.shape
    if k % block or k % 2:
        raise ValueError(f"nvfp4 needs the input dim divisible by {block}, got {n}x{k}")
    scale_2 = global_scale(w) if scale_2 is None else scale_2.float()
    scale = block_scales(w, scale_2, block)
    per_block = (scale.float() * scale_2).unsqueeze(-1)  # [N, K/block, 1]
    scaled = (w.reshape(n, k // block, block) / per_block).reshape(n, k)  # promotes to fp32, as in ModelOpt
    codes = e2m1_codes(scaled)
    return pack(codes), scale, scale_2


def pack(codes: torch.Tensor) -> torch.Tensor:
    """uint8 codes [..., K] -> [..., K/2]: element 2j low nibble, 2j+1 high nibble."""
    return codes[..., 0::2] | (codes[..., 1::2] << 4)


def unpack(packed: torch.Tensor) -> torch.Tensor:
    """uint8 [..., K/2] -> codes [..., K]."""
    return torch.stack([packed & 0x0F, packed >> 4], dim=-1).flatten(-2)


def dequantize(packed: torch.Tensor, scale: torch.Tensor, scale_2: torch.Tensor,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 [N, K/2], e4m3 [N, K/block], fp32 [] -> [N, K]."""
    values = torch.tensor(E2M1_VALUES, device=packed.device)[unpack(packed).long()]  # [N, K]
    n, k = values.shape
    block = k // scale.shape[-1]
    per_block = (scale.float() * scale_2.float()).unsqueeze(-1)
    return (values.reshape(n, k // block, block) * per_block).reshape(n, k).to(dtype)
