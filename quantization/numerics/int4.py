"""INT4 group-wise weights (`int4_awq`, W4A16, group 128) in ModelOpt's unified HF checkpoint layout.

Layout (ModelOpt `pack_int4_in_uint8`): `weight` uint8 [N/2, K]; byte (i, k) holds output rows 2i (low
nibble) and 2i+1 (high nibble) of column k, each a two's-complement int4 in -8..7. `weight_scale` fp32
[N, K/group] = group amax / 7; w_hat = q * scale. (Packing runs along the output dim, unlike ModelOpt's
INT4QTensor, which packs consecutive input elements into offset-binary nibbles.)
"""

from __future__ import annotations

import torch

INT4_MAX = 7.0


def quantize(w: torch.Tensor, group_size: int = 128,
             amax: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """w [N, K] -> (weight uint8 [N/2, K], weight_scale fp32 [N, K/group_size])."""
    n, k = w.shape
    if n % 2 or k % group_size:
        raise ValueError(f"int4 needs an even output dim and input dim divisible by {group_size}, got {n}x{k}")
    if amax is None:
        amax = w.float().reshape(n, k // group_size, group_size).abs().amax(-1)  # [N, G]
    amax = torch.where(amax == 0, torch.full_like(amax, INT4_MAX), amax.float())
    scale = amax / INT4_MAX
    q = (w / scale.repeat_interleave(group_size, dim=1)).round().clamp(-8, 7).to(torch.int8)  # [N, K]
    return pack(q), scale


def pack(q: torch.Tensor) -> torch.Tensor:
    """int8 [N, K] in -8..7 -> uint8 [N/2, K]: row 2i low nibble, row 2i+1 high nibble."""
    low, high = q[0::2] & 0x0F, q[1::2] & 0x0F
    return (low | (high << 4)).to(torch.uint8)


def unpack(packed: torch.Tensor) -> torch.Tensor:
    """uint8 [N/2, K] -> int8 [N, K] in -8..7."""
    p = packed.to(torch.int16)
    low, high = p & 0x0F, p >> 4
    q = torch.stack([low, high], dim=1).reshape(-1, packed.shape[1])  # rows interleave: 2i, 2i+1
    return torch.where(q >= 8, q - 16, q).to(torch.int8)


def dequantize(packed: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 [N/2, K], scale [N, G] -> [N, K]."""
    q = unpack(packed).float()
    group = q.shape[1] // scale.shape[1]
    return (q * scale.float().repeat_interleave(group, dim=1)).to(dtype)
