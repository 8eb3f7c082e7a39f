"""GPTQ (Frantar et al., 2022), pure torch: `gptq` (W4A16, group 128), stored exactly as `int4-awq` stores its
weights (`W4A16_AWQ`: int4 -8..7 packed two output rows a byte, symmetric fp32 group scales = group amax / 7).

Calibration is sequential (`sequential=true`, the default, as the paper, ModelOpt and llm-compressor do it): decoder
layer i is quantized on the outputs of the already quantized layers 0..i-1, and inside a layer each linear sees the
already quantized linears before it (ember.quantization.calibrate.calibrate_sequential). Per linear (ember's fused
q/k/v and gate/up share one input, so one Hessian serves the fused module): H = 2/n sum x^T x over every
calibration token, dampened by `percdamp` * mean(diag H); dead input channels (diag 0) get H_ii = 1 and a zero
weight column. With U = chol(H^-1) upper, columns are quantized left to right in blocks of `block_size`, each
column's error (w - q) / U_ii pushed onto the not yet quantized columns, and the block's accumulated error onto the
columns after the block. Group scales are taken, when a group starts, from the error-updated weights (the reference
implementation); with `act_order` (columns in order of decreasing H_ii) the scales are fixed from the original
weights first (GPTQ's static groups), since the stored groups are contiguous in K. `pre_quant_scale` is written as
ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ember.quantization.numerics import int4
from ember.quantization.recipe import GroupedConfig, LayerStats, Recipe, RecipeError


@dataclass(frozen=True)
class GPTQConfig(GroupedConfig):
    block_size: int = 128     # columns per lazy-update block (rounded up to a multiple of the group size)
    percdamp: float = 0.01    # dampening: percdamp * mean(diag H) added to the diagonal
    act_order: bool = True    # quantize columns in order of decreasing H_ii (static group scales)
    sequential: bool = True   # False: every H from the full-precision model's inputs, in one pass


def _group_scale(w: torch.Tensor) -> torch.Tensor:
    """w [N, g] -> symmetric scale [N] as int4.quantize computes it (amax / 7; amax 0 -> 1)."""
    amax = w.abs().amax(-1)
    amax = torch.where(amax == 0, torch.full_like(amax, int4.INT4_MAX), amax)
    return amax / int4.INT4_MAX


def gptq_quantize(weight: torch.Tensor, h: torch.Tensor, group_size: int = 128, block_size: int = 128,
                  percdamp: float = 0.01, act_order: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """weight [N, K], H [K, K] -> (q int8 [N, K] in -8..7, scale fp32 [N, K/group]); w_hat = q * scale."""
    n, k = weight.shape
    if k % group_size:
        raise ValueError(f"input dim {k} is not divisible by the group size {group_size}")
    w = weight.detach().float().clone()
    h = h.detach().float().clone().to(w.device)
    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0

    scale = torch.zeros(n, k // group_size, dtype=torch.float32, device=w.device)
    perm = None
    if act_order:  # static groups: the stored groups are contiguous in K, so fix their scales up front
        for g in range(k // group_size):
            scale[:, g] = _group_scale(w[:, g * group_size:(g + 1) * group_size])
        perm = torch.argsort(torch.diag(h), descending=True)
        w, h = w[:, perm], h[perm][:, perm]
    col_group = (perm if perm is not None else torch.arange(k, device=w.device)) // group_size

    damp = percdamp * float(torch.diag(h).mean())
    eye = torch.eye(k, dtype=h.dtype, device=h.device)
    for attempt in range(6):  # a near-singular H (few rows, collinear inputs): raise the dampening
        try:
            hinv = torch.cholesky_inverse(torch.linalg.cholesky(h + damp * eye))
            u = torch.linalg.cholesky(hinv, upper=True)
            break
        except torch.linalg.LinAlgError:
            damp = damp * 10 if damp > 0 else 1e-6
    else:
        raise RecipeError("GPTQ: the Hessian stays singular after dampening; exclude the layer with --exclude")

    q = torch.zeros(n, k, dtype=torch.int8, device=w.device)
    block = -(-max(block_size, group_size) // group_size) * group_size  # a group never straddles two blocks
    for i1 in range(0, k, block):
        i2 = min(i1 + block, k)
        w1 = w[:, i1:i2].clone()
        err1 = torch.zeros_like(w1)
        u1 = u[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = i1 + i
            if not act_order and col % group_size == 0:  # scale of this group from the error-updated weights
                scale[:, col // group_size] = _group_scale(w1[:, i:i + group_size])
            s = scale[:, col_group[col]]
            wc = w1[:, i]
            qc = (wc / s).round().clamp(-8, 7)
            q[:, col] = qc.to(torch.int8)
            e = (wc - qc * s) / u1[i, i]
            w1[:, i:] -= e[:, None] * u1[i, i:][None, :]
            err1[:, i] = e
        w[:, i2:] -= err1 @ u[i1:i2, i2:]

    if perm is not None:
        q = q[:, torch.argsort(perm)]
    return q, scale


class GPTQRecipe(Recipe):
    name, quant_algo, group_size = "gptq", "W4A16_AWQ", 128
    needs_hessian = True
    config_cls = GPTQConfig
    description = "INT4 group-128 weights by GPTQ (sequential, Hessian error compensation), fp activations (W4A16)"

    def quantize_layer(self, name: str, weight: torch.Tensor, stats: LayerStats | None,
                       shard_rows: list[int]) -> dict[str, torch.Tensor]:
        if stats is None or stats.hessian is None:
            raise RecipeError(f"layer {name}: GPTQ needs the calibration Hessian of the layer's inputs and got none")
        c = self.config
        q, scale = gptq_quantize(weight, stats.hessian.to(weight.device), self.group_size, c.block_size,
                                 c.percdamp, c.act_order)
        return {"weight": int4.pack(q), "weight_scale": scale,
                "pre_quant_scale": torch.ones(weight.shape[1], dtype=torch.float32, device=weight.device)}
