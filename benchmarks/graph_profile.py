"""Per-kernel GPU time of one captured CUDA graph replay, for the decode benchmarks' profile tables."""

from __future__ import annotations

import torch


def graph_kernel_rows(graph: torch.cuda.CUDAGraph, reps: int = 5) -> list[tuple[float, int, str]]:
    """(microseconds per replay, launches per replay, kernel name), slowest first."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            graph.replay()
        torch.cuda.synchronize()
    rows = []
    for event in prof.key_averages():
        t = getattr(event, "device_time_total", None) or getattr(event, "cuda_time_total", 0)
        if t > 0:
            rows.append((t / reps, event.count // reps, event.key))
    return sorted(rows, reverse=True)
