"""`ember quantize`: calibrate + quantize a model with a recipe plugin, export a unified HF checkpoint + report."""

from __future__ import annotations

import argparse
from pathlib import Path

EPILOG = """examples:
  ember quantize --model smollm2 --method fp8 --calib lee-news --calib-size 64 --output smollm2-fp8
  ember quantize --model ./llama --method int4-awq --calib cnn_dailymail --exclude '*.down_proj' --kv-cache fp8
  ember quantize --model smollm2 --method int4-awq --recipe-option group_size=64 --calib lee-news
  ember quantize --model smollm2 --method nvfp4 --calib ./my-corpus.jsonl --device cuda --force

Recipes are plugins: `ember plugins list` shows the registered ones. The output folder (default
<model>-<method>) holds model.safetensors, config.json, hf_quant_config.json, the tokenizer, report.json,
report.md and layer_error.png; it is written atomically and an existing one is refused without --force."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quantize", help="quantize a model with a recipe; writes a checkpoint and a report",
                       description="Quantize a model with a registered recipe over a calibration dataset.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", "-m", required=True, help="alias, local dir, .gguf file or org/name repo id")
    p.add_argument("--method", required=True, help="recipe name (fp8, int4-awq, nvfp4, ...)")
    p.add_argument("--calib", default="cnn_dailymail", help="calibration dataset name or .txt/.jsonl/.parquet")
    p.add_argument("--calib-size", type=int, default=512, help="calibration sequences (default 512)")
    p.add_argument("--calib-seq-len", type=int, default=512, help="tokens per calibration sequence (default 512)")
    p.add_argument("--batch-size", type=int, default=4, help="sequences per forward pass (default 4)")
    p.add_argument("--kv-cache", choices=("fp8",), help="also write FP8 KV-cache scales (k_scale / v_scale)")
    p.add_argument("--exclude", nargs="*", default=[], metavar="PATTERN",
                   help="fnmatch patterns of checkpoint module names to leave unquantized ('*.down_proj')")
    p.add_argument("--output", "-o", help="output directory (default ./<model>-<method>)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where to calibrate (default cpu)")
    p.add_argument("--force", action="store_true", help="replace an existing output directory")
    p.add_argument("--eval-dataset", default="wikipedia-sample",
                   help="held-out text for perplexity before/after (default wikipedia-sample; 'none' skips)")
    p.add_argument("--eval-windows", type=int, default=16, help="perplexity windows (default 16)")
    p.add_argument("--eval-seq-len", type=int, default=512, help="tokens per perplexity window (default 512)")
    p.add_argument("--recipe-option", action="append", default=[], metavar="KEY=VALUE",
                   help="recipe config override, repeatable (int4-awq: group_size=64; int8-sq: alpha=0.8)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ember.quantization.workbench import QuantizeOptions, quantize

    from ember.plugins import get_registry

    recipe_cls = get_registry().load("quant_recipe", args.method)
    recipe_options = recipe_cls.parse_options(args.recipe_option)
    output = args.output or f"{Path(str(args.model)).name}-{args.method}"
    opts = QuantizeOptions(calib=args.calib, calib_size=args.calib_size, calib_seq_len=args.calib_seq_len,
                           batch_size=args.batch_size, kv_cache=args.kv_cache, exclude=tuple(args.exclude),
                           device=args.device, force=args.force,
                           eval_dataset=None if args.eval_dataset.lower() == "none" else args.eval_dataset,
                           eval_windows=args.eval_windows, eval_seq_len=args.eval_seq_len, progress=not args.quiet,
                           recipe_options=recipe_options)
    report = quantize(args.model, args.method, output, opts)
    print_summary(report)
    return 0


def print_summary(r: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    from ember.quantization.report import peak_label

    t = Table(title=f"{r['model']} -> {r['method']} ({r['quant_algo']})")
    t.add_column("")
    t.add_column("before", justify="right")
    t.add_column("after", justify="right")
    if "ppl_before" in r:
        t.add_row(f"perplexity ({r['eval']['dataset']})", f"{r['ppl_before']:.3f}", f"{r['ppl_after']:.3f}")
    t.add_row("size on disk", f"{r['size_before_bytes'] / 2**20:.1f} MiB", f"{r['size_after_bytes'] / 2**20:.1f} MiB")
    t.add_row("weights in memory (parameter bytes)", f"{r['weights_memory_before_bytes'] / 2**20:.1f} MiB",
              f"{r['weights_memory_after_bytes'] / 2**20:.1f} MiB")
    if "gpu_memory_allocated_before_bytes" in r:
        t.add_row("GPU memory allocated", f"{r['gpu_memory_allocated_before_bytes'] / 2**20:.1f} MiB",
                  f"{r['gpu_memory_allocated_after_bytes'] / 2**20:.1f} MiB")
    worst = max(r["layers"], key=lambda e: e["rel_weight_error"])
    t.add_row("worst layer weight error", "", f"{worst['rel_weight_error']:.4f} ({worst['layer']})")
    t.add_row("calibration / total time", "", f"{r['calibration_s']:.1f} s / {r['total_s']:.1f} s")
    t.add_row(f"peak {peak_label(r['device'])}", "", f"{r['peak_memory_mb']:.0f} MiB")
    Console().print(t)
    print(f"wrote {r['output']} (report.md, report.json)")
