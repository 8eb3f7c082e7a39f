"""Which small ops run as fused Triton kernels: CUDA tensors, unless EMBER_FUSED_OPS=0 (A/B timing, debugging)."""

from __future__ import annotations

import os
from types import ModuleType

import torch

ENABLED = os.environ.get("EMBER_FUSED_OPS", "1") != "0"
_kernels: ModuleType | None = None


def fused_kernels(x: torch.Tensor) -> ModuleType | None:
    """ember.layers.fused_kernels for a CUDA tensor when enabled, else None (the PyTorch path runs)."""
    global _kernels
    if not (ENABLED and x.is_cuda):
        return None
    if _kernels is None:
        from ember.layers import fused_kernels as module   # imports triton: only ever on a CUDA call
        _kernels = module
    return _kernels
