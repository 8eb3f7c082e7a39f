"""Calibration: run ember's own forward over token windows and record each target linear's input statistics."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ember.evaluation import PrefillRunner
from ember.layers.attention import Attention
from ember.quantization.recipe import LayerStats


class _Collector:
    def __init__(self, keep_rows: int, seed: int) -> None:
        self.amax = self.channel_amax = self.channel_sum = None
        self.count, self.keep_rows = 0, keep_rows
        self.rows: list[torch.Tensor] = []
        self.gen = torch.Generator().manual_seed(seed)

    def __call__(self, module: nn.Module, args: tuple) -> None:
        x = args[0].detach().reshape(-1, args[0].shape[-1]).float()  # [T, K]
        a = x.abs()
        cmax, csum = a.amax(0), a.sum(0)
        self.channel_amax = cmax if self.channel_amax is None else torch.maximum(self.channel_amax, cmax)
        self.channel_sum = csum if self.channel_sum is None else self.channel_sum + csum
        self.count += x.shape[0]
        if self.keep_rows:
            idx = torch.randperm(x.shape[0], generator=self.gen)[: max(1, self.keep_rows // 8)]
            self.rows.append(x[idx.to(x.device)].cpu())

    def stats(self) -> LayerStats:
        sample = torch.cat(self.rows)[: self.keep_rows] if self.rows else None
        return LayerStats(amax=self.channel_amax.max(), channel_amax=self.channel_amax.cpu(),
                          channel_mean=(self.channel_sum / max(self.count, 1)).cpu(), sample=sample)


@torch.no_grad()
def calibrate(model: nn.Module, targets: dict[str, nn.Module], batches: torch.Tensor, batch_size: int,
              keep_rows: int = 0, kv_cache: bool = False, progress: Callable | None = None
              ) -> tuple[dict[str, LayerStats], dict[int, tuple[float, float]]]:
    """batches [N, S] token ids -> (per-layer LayerStats, {layer_idx: (k amax, v amax)} when `kv_cache`).

    `keep_rows` > 0 keeps that many random input rows per layer for search-based recipes.
    """
    collectors = {name: _Collector(keep_rows, seed=i) for i, name in enumerate(targets)}
    hooks = [m.register_forward_pre_hook(collectors[n]) for n, m in targets.items()]
    kv: dict[int, tuple[float, float]] = {}

    def kv_hook(module: Attention, args: tuple) -> None:  # k, v after rotary, as the cache stores them
        k, v = float(args[1].abs().max()), float(args[2].abs().max())
        old = kv.get(module.layer_idx, (0.0, 0.0))
        kv[module.layer_idx] = (max(old[0], k), max(old[1], v))

    if kv_cache:
        hooks += [m.register_forward_pre_hook(kv_hook) for m in model.modules() if isinstance(m, Attention)]
    try:
        runner = PrefillRunner(model, max_seqs=batch_size, max_len=batches.shape[1])
        for i in range(0, batches.shape[0], batch_size):
            runner.hidden([row.tolist() for row in batches[i:i + batch_size]])
            if progress:
                progress(min(batch_size, batches.shape[0] - i))
    finally:
        for h in hooks:
            h.remove()
    return {n: c.stats() for n, c in collectors.items() if c.count}, kv
