"""One GPU run: which INT4-AWQ path is fastest per Qwen3-8B shape and M (picks tinygemm.MAX_M).

    python benchmarks/make_shim.py /tmp/shim && PYTHONPATH=/tmp/shim python benchmarks/int4_paths.py

Per shape and M: aten tinygemm (`_weight_int4pack_mm`), ember's Triton kernel (dispatch table), and bf16 F.linear
on the unquantized weight as the baseline; CUDA-graph timing cycling over 36 weight copies (HBM reads), median.
RANDOM weights (speed does not depend on values).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from graph_profile import graph_time_us  # benchmarks/ is on sys.path when run as a script

from ember.quantization.formats import get_format
from ember.quantization.kernels import dispatch, tinygemm
from ember.quantization.linear import QuantLinear
from ember.quantization.random_quant import fill_random_

SHAPES = {"qkv": (6144, 4096), "o_proj": (4096, 4096), "gate_up": (24576, 4096), "down": (4096, 12288)}
COPIES = 12


def measure_shape(name: str, n: int, k: int) -> None:
    """One table row per M for the [n, k] weight (COPIES distinct copies, so every call reads HBM)."""
    layers, dense = [], []
    for _ in range(COPIES):
        w = torch.randn(n, k, device="cuda") * 0.02
        layer = QuantLinear(get_format("W4A16_AWQ", 128), k, [n], False, torch.bfloat16, "cuda")
        layers.append(fill_random_(layer, w))
        dense.append(w.to(torch.bfloat16))
    for m in (1, 4, 16, 32, 64, 128, 256):
        x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
        t_bf16 = graph_time_us(lambda i: F.linear(x, dense[i % COPIES]), COPIES)
        t_tg = graph_time_us(lambda i: tinygemm.linear(x, *layers[i % COPIES].tinygemm, None, None, n), COPIES)
        cfg = dispatch.lookup("int4", n, k, m)
        t_tr = graph_time_us(lambda i: dispatch.run("int4", layers[i % COPIES], x, cfg), COPIES)
        best = min((t_bf16, "bf16"), (t_tg, "tinygemm"), (t_tr, "triton"))[1]
        print(f"| {name} | {m} | {t_bf16:.1f} | {t_tg:.1f} | {t_tr:.1f} | {best} |", flush=True)


def main() -> None:
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}; RANDOM weights")
    print("| shape | M | bf16 F.linear us | tinygemm us | triton us | best |\n|---|---|---|---|---|---|")
    for name, (n, k) in SHAPES.items():
        measure_shape(name, n, k)
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
