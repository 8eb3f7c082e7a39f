"""The quantization report: per-layer error, report.json, report.md and a PNG plot (when matplotlib is there)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ember.quantization.formats import Format


def layer_error(name: str, ckpt_names: str, w: torch.Tensor, fmt: Format, tensors: dict[str, torch.Tensor],
                shard_rows: list[int]) -> dict[str, Any]:
    """Relative weight error ||W - W_hat|| / ||W||, W_hat as the kernel applies it (pre_quant_scale folded back)."""
    w_hat = fmt.weight(tensors, shard_rows).float()
    if "pre_quant_scale" in tensors:
        w_hat = w_hat * tensors["pre_quant_scale"].float()[None, :]
    rel = float((w - w_hat).norm() / w.norm().clamp(min=1e-12))
    return {"layer": name, "checkpoint_names": ckpt_names, "shape": list(w.shape), "rel_weight_error": rel}


def peak_label(device: str) -> str:
    """What `peak_memory_mb` measured on that device (workbench.peak_memory_mb)."""
    return "process RSS" if device == "cpu" else "GPU memory allocated"


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def write_report(output: Path, r: dict[str, Any]) -> None:
    (output / "report.json").write_text(json.dumps(r, indent=2, default=str) + "\n")
    png = plot_errors(output / "layer_error.png", r["layers"], r["method"])
    lines = [f"# Quantization report: {r['model']} -> {r['method']} ({r['quant_algo']})", "",
             "| | before | after |", "|---|---|---|"]
    if "ppl_before" in r:
        lines.append(f"| perplexity ({r['eval']['dataset']}, {r['eval']['windows']} x {r['eval']['seq_len']} "
                     f"tokens) | {r['ppl_before']:.3f} | {r['ppl_after']:.3f} |")
    lines += [f"| size on disk (safetensors) | {_mb(r['size_before_bytes'])} | {_mb(r['size_after_bytes'])} |",
              f"| weights in memory (parameter bytes, fp32 load; excl. CPU dequant cache) | "
              f"{_mb(r['weights_memory_before_bytes'])} | {_mb(r['weights_memory_after_bytes'])} |"]
    if "gpu_memory_allocated_before_bytes" in r:
        lines += [f"| GPU memory allocated, model loaded (torch.cuda.memory_allocated) | "
                  f"{_mb(r['gpu_memory_allocated_before_bytes'])} | {_mb(r['gpu_memory_allocated_after_bytes'])} |",
                  f"| peak GPU memory allocated (whole run) | | {_mb(r['gpu_memory_peak_bytes'])} |"]
    lines += ["",
              f"calibration: {r['calib']} ({r['calib_size']} x {r['calib_seq_len']} tokens), "
              f"{r['calibration_s']:.1f} s; quantize {r['quantize_s']:.1f} s; export {r['export_s']:.1f} s; "
              f"peak {peak_label(r['device'])} {r['peak_memory_mb']:.0f} MiB; KV cache: {r['kv_cache'] or 'model dtype'}",
              "", "## Per-layer weight error", "",
              png if png.endswith(".png") else f"_{png}_", "",
              "| layer | checkpoint names | shape | rel. weight error |", "|---|---|---|---|"]
    if png.endswith(".png"):
        lines[-4] = f"![per-layer error]({png})"
    lines += [f"| {e['layer']} | {e['checkpoint_names']} | {e['shape'][0]}x{e['shape'][1]} | "
              f"{e['rel_weight_error']:.4f} |" for e in r["layers"]]
    (output / "report.md").write_text("\n".join(lines) + "\n")


def plot_errors(path: Path, layers: list[dict], method: str) -> str:
    """The PNG's file name, or a note saying why there is none."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "no plot: matplotlib is not installed (pip install 'ember[report]')"
    fig, ax = plt.subplots(figsize=(max(6, len(layers) * 0.12), 3.5))
    ax.bar(range(len(layers)), [e["rel_weight_error"] for e in layers])
    ax.set_xlabel("linear layer (model order)")
    ax.set_ylabel("||W - W_hat|| / ||W||")
    ax.set_title(f"per-layer weight error, {method}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path.name
