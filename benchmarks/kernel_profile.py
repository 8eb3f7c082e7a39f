"""Run one quantized-linear kernel a few times, for a hardware profiler (Nsight Compute) to read its counters.

    ncu --clock-control none --kernel-name regex:_nvfp4 --launch-skip 3 --launch-count 1 --section SpeedOfLight \\
        python benchmarks/kernel_profile.py --kind nvfp4 --shape qkv --m 64

The config is the dispatch table's unless --config gives one (dispatch.Config fields, comma-separated). RANDOM
weights (speed does not depend on them).
"""

from __future__ import annotations

import argparse

import torch
from quant_bench import ALGO, SHAPES, make_layer  # benchmarks/ is on sys.path when run as a script

from ember.quantization.kernels import dispatch
from ember.quantization.kernels.dispatch import Config


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kind", choices=sorted(ALGO), required=True)
    ap.add_argument("--shape", choices=sorted(SHAPES), default="qkv")
    ap.add_argument("--m", type=int, default=1)
    ap.add_argument("--config", default="", help="kind,block_m,block_n,block_k,warps,stages,split (default: table)")
    ap.add_argument("--calls", type=int, default=6)
    args = ap.parse_args()
    n, k = SHAPES[args.shape]
    layer = make_layer(args.kind, n, k)
    if args.config:
        f = args.config.split(",")
        cfg = Config(f[0], *map(int, f[1:]))
    else:
        cfg = dispatch.lookup(args.kind, n, k, args.m)
    x = torch.randn(args.m, k, device="cuda", dtype=torch.bfloat16)
    for _ in range(args.calls):
        dispatch.run(args.kind, layer, x, cfg)
    torch.cuda.synchronize()
    print(f"{args.kind} {args.shape} M={args.m} {cfg}")


if __name__ == "__main__":
    main()
