"""CUDA-graph timing for the benchmarks: per-call time of back-to-back calls in one graph, and per-kernel time of
one replay (the decode benchmarks' profile tables)."""

from __future__ import annotations

import torch


def graph_time_us(fn, calls: int, reps: int = 10) -> float:
    """Per-call GPU time of `calls` back-to-back fn(i) captured in one graph, median over replays."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for i in range(calls):
            fn(i)
    torch.cuda.current_stream().wait_stream(s)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for i in range(calls):
            fn(i)
    for _ in range(3):
        g.replay()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        g.replay()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) * 1e3 / calls)
    del g
    return sorted(times)[len(times) // 2]


def graph_kernel_rows(graph: torch.cuda.CUDAGraph, reps: int = 5) -> list[tuple[float, int, str]]:
    """(microseconds per replay, launches per replay, kernel name), slowest first."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            graph.replay()
        torch.cuda.synchronize()
    return [(t, int(c), name) for t, c, name in kernel_rows(prof, reps)]     # whole launches a replay


def kernel_rows(prof, per: float) -> list[tuple[float, float, str]]:
    """A torch.profiler run's GPU kernels as (microseconds, launches, name) per `per` (replays, steps), slowest
    first."""
    rows = []
    for event in prof.key_averages():
        t = getattr(event, "device_time_total", None) or getattr(event, "cuda_time_total", 0)
        if t > 0:
            rows.append((t / per, event.count / per, event.key))
    return sorted(rows, reverse=True)
