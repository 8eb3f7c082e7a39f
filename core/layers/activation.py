"""Gated activations over a fused [gate | up] input: SiLU-and-mul (Llama family) and GeLU-tanh-and-mul (Gemma)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ember.layers.fused import fused_kernels


class SiluAndMul(nn.Module):
    """[T, 2I] -> [T, I]: silu(gate) * up."""

    kind = "silu"   # the name ember.layers.gemv's gated prologue knows it by

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fused = fused_kernels(x)
        if fused is not None:
            return fused.act_and_mul(x)
        gate, up = x.chunk(2, dim=-1)
        return F.silu(gate) * up


class GeluTanhAndMul(nn.Module):
    """[T, 2I] -> [T, I]: gelu_tanh(gate) * up."""

    kind = "gelu_tanh"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fused = fused_kernels(x)
        if fused is not None:
            return fused.act_and_mul(x, gelu=True)
        gate, up = x.chunk(2, dim=-1)
        return F.gelu(gate, approximate="tanh") * up


_ACTIVATIONS = {"silu": SiluAndMul, "swish": SiluAndMul, "gelu_pytorch_tanh": GeluTanhAndMul,
                "gelu_tanh": GeluTanhAndMul}


def get_act_and_mul(name: str) -> nn.Module:
    """The gated activation for a config's `hidden_act` / `hidden_activation`."""
    if name not in _ACTIVATIONS:
        raise ValueError(f"unsupported gated activation {name!r}; supported: {', '.join(sorted(_ACTIVATIONS))}")
    return _ACTIVATIONS[name]()
