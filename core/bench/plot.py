"""`--plot`: PNG charts of bench results. matplotlib is optional (`pip install matplotlib`) and imported lazily."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _plt():
    try:
        import matplotlib
    except ImportError as exc:
        raise ValueError("--plot needs matplotlib: pip install matplotlib") from exc
    matplotlib.use("Agg")   # files only, no display
    import matplotlib.pyplot as plt
    return plt


def throughput_vs_concurrency(rows: list[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Output tokens/s against the number of sequences allowed to run together."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [r["concurrency"] for r in rows]
    ax.plot(xs, [r["output_tokens_per_s"] for r in rows], marker="o")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("concurrency (max running sequences)")
    ax.set_ylabel("output tokens / s")
    ax.set_title(title or "offline throughput vs concurrency")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def latency_percentiles(res: dict[str, Any], path: str | Path, title: str = "") -> Path:
    """TTFT and inter-token latency percentiles (ms) as bars."""
    plt = _plt()
    keys = [k for k in ("ttft_ms", "itl_p50_ms", "itl_p90_ms", "itl_p99_ms") if k in res]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.bar([k.removesuffix("_ms") for k in keys], [res[k] for k in keys])
    ax.set_ylabel("ms")
    ax.set_title(title or "latency")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
