"""Fresh-prompt prefill: the SDPA route (ember.attention.sdpa_prefill) vs the paged Triton kernel, per layer call
and end to end, in one GPU run; FlashAttention-2 (torch.nn.attention.varlen) timed beside them.

    python benchmarks/make_shim.py /tmp/shim && PYTHONPATH=/tmp/shim python benchmarks/sdpa_prefill_ab.py

1. Per layer call (Qwen3-8B heads 32/8/128, bf16, random data, shuffled paged cache, cache write included): the
   Triton backend with the route off and on, each checked against fp32 SDPA on the step's own k/v, and
   FlashAttention-2's varlen kernel on the same k/v.
2. End to end: `ember bench prefill` (qwen3-8b, RANDOM weights) with the route off and on in one process, counting
   the layer calls that took the route (so a figure cannot come from a route that never engaged).
"""

from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from attention_bench import add_head_args, bench, make_step, rel_err  # noqa: E402 - benchmarks/ is no package

from ember.attention import sdpa_prefill  # noqa: E402
from ember.attention.metadata import build_metadata  # noqa: E402
from ember.attention.triton_backend import TritonAttentionBackend  # noqa: E402
from ember.layers.attention import Attention  # noqa: E402

CALLS = [0]


def counting(fn):
    def wrapped(*a, **kw):
        CALLS[0] += 1
        return fn(*a, **kw)
    return wrapped


def layer_calls(hq: int, hkv: int, d: int, bs: int) -> None:
    dev, dtype = "cuda", torch.bfloat16
    backend = TritonAttentionBackend(torch.device(dev), dtype)
    for b, n in ((8, 2048), (32, 512), (64, 256), (1, 4096)):
        cache, tables, q, k, v = make_step(b, n, n, hq, hkv, d, bs, dtype, dev)
        layer = Attention(0, hq, hkv, d, scale=d ** -0.5)

        def run(on: bool):
            meta = build_metadata(backend, [cache.clone()], bs, [n] * b, [n] * b, tables, dev)

            def fn():
                sdpa_prefill.ENABLED = on          # read at call time: set it in every timed call
                return layer(q, k, v, meta)
            return fn, fn()

        fn_off, out_off = run(False)
        fn_on, out_on = run(True)
        assert sdpa_prefill.eligible(layer, q, False, build_metadata(backend, [cache], bs, [n] * b, [n] * b,
                                                                      tables, dev)), "route not eligible"
        args = tuple(x.view(b, n, -1, d).transpose(1, 2).float() for x in (q, k, v))
        want = torch.nn.functional.scaled_dot_product_attention(*args, is_causal=True, enable_gqa=True)
        want = want.transpose(1, 2).reshape(b * n, hq * d)
        t_off = bench(fn_off, dev, graph=False)
        t_on = bench(fn_on, dev, graph=False)
        fa2 = ""
        try:
            from torch.nn.attention.varlen import varlen_attn
            cu = torch.arange(0, (b + 1) * n, n, device=dev, dtype=torch.int32)
            qf, kf, vf = (x.view(b * n, -1, d) for x in (q, k, v))
            fa2 = f" | FA2 varlen (attention only) {bench(lambda: varlen_attn(qf, kf, vf, cu, cu, n, n, window_size=(-1, 0)), dev, graph=False):8.1f} us"
        except Exception as exc:  # noqa: BLE001 - a torch without it
            fa2 = f" | FA2 varlen: {type(exc).__name__}"
        print(f"  {b} x {n}: triton {t_off:8.1f} us (err {rel_err(out_off, want):.1e}) | SDPA route {t_on:8.1f} us "
              f"(err {rel_err(out_on, want):.1e}) -> x{t_off / t_on:.2f}{fa2}", flush=True)
    sdpa_prefill.ENABLED = True


def end_to_end(batch: int, input_len: int) -> None:
    from ember.cli import bench as bench_cmd

    sdpa_prefill.attend = counting(sdpa_prefill.attend)
    for on in (False, True, False, True):
        sdpa_prefill.ENABLED = on
        CALLS[0] = 0
        parser = argparse.ArgumentParser(prog="ember")
        bench_cmd.add_parser(parser.add_subparsers(dest="command"))
        args = parser.parse_args(["bench", "prefill", "--model", "qwen3-8b", "--random-weights",
                                  "--batch-size", str(batch), "--input-len", str(input_len)])
        args.func(args)
        print(f"  ^ route {'on' if on else 'off'}: {CALLS[0]} layer calls took the SDPA route", flush=True)
        gc.collect()
        torch.cuda.empty_cache()


def main() -> None:
    ap = argparse.ArgumentParser()
    add_head_args(ap)
    ap.add_argument("--skip-e2e", action="store_true")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}; RANDOM data / weights", flush=True)
    layer_calls(args.hq, args.hkv, args.d, args.block_size)
    if not args.skip_e2e:
        end_to_end(8, 2048)


if __name__ == "__main__":
    main()
