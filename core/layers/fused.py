"""Which small ops run as fused Triton kernels: CUDA tensors, unless EMBER_FUSED_OPS=0 (A/B timing, debugging)."""

from __future__ import annotations

import os
from types import ModuleType

import torch

ENABLED = os.environ.get("EMBER_FUSED_OPS", "1") != "0"
# per-head q/k RMSNorm + rotary in one kernel (Qwen3, Gemma 3); EMBER_FUSED_QK_ROPE=0 keeps the two-kernel path
QK_ROPE = os.environ.get("EMBER_FUSED_QK_ROPE", "1") != "0"
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


def fused_qk_rope(x: torch.Tensor) -> ModuleType | None:
    """The kernels module when the one-kernel q/k norm + rotary path is on for this tensor, else None."""
    return fused_kernels(x) if QK_ROPE else None
