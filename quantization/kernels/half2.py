"""Shared pieces of the packed-half2 decode GEMVs (w4_gemv.py, w8_gemv.py): the scoped PTX block, fp16 halves of an
int32 in Triton, and the switch between inline PTX (GPU) and the fp32 twins (the CPU interpreter)."""

from __future__ import annotations

import os

import triton
import triton.language as tl


def block(regs: str, lines: list[str], outs: list[tuple[str, str]]) -> str:
    """A scoped PTX block; each f16x2 accumulator in `outs` leaves as the fp32 sum of its halves. `lo` / `hi` (.b16)
    and `fl` / `fh` (.f32) are declared for the lines' use too."""
    for acc, out in outs:
        lines += [f"mov.b32 {{lo, hi}}, {acc};", "cvt.f32.f16 fl, lo;", "cvt.f32.f16 fh, hi;", "add.f32 fl, fl, fh;",
                  f"mov.b32 {out}, fl;"]
    return "{\n" + "\n".join([regs, ".reg .b16 lo, hi;", ".reg .f32 fl, fh;"] + lines) + "\n}"


def use_asm(x) -> bool:
    """The half2 PTX path: on the GPU, unless the Triton interpreter runs the kernel (it cannot run inline PTX)."""
    return x.is_cuda and os.environ.get("TRITON_INTERPRET", "0") != "1"


@triton.jit
def half(v, HI: tl.constexpr):
    """fp16 half (low or high) of int32 `v` as fp32."""
    if HI:
        v = v >> 16
    return (v & 0xFFFF).to(tl.int16).to(tl.float16, bitcast=True).to(tl.float32)


@triton.jit
def f16x2(v):
    """fp32 `v` rounded to fp16 in both halves of an int32 (a scale or an x value for the half2 math)."""
    h = v.to(tl.float16).to(tl.int16, bitcast=True).to(tl.int32) & 0xFFFF
    return h | (h << 16)


@triton.jit
def f16_bits(v):
    """fp32 / fp16 `v` as fp16 bits in the low half of an int32 (one x value of a pair)."""
    return v.to(tl.float16).to(tl.int16, bitcast=True).to(tl.int32) & 0xFFFF


@triton.jit
def columns8(t):
    """t [BM, BG, 8] -> its 8 columns, each [BM, 1, BG] (column j of a group meets that group's j-th weight pair)."""
    ev, od = tl.split(tl.reshape(t, (t.shape[0], t.shape[1], 2, 2, 2)))                  # j bit 0
    e0, e1 = tl.split(ev)                                                                  # j bit 1
    o0, o1 = tl.split(od)
    c0, c4 = tl.split(e0)                                                                  # j bit 2
    c2, c6 = tl.split(e1)
    c1, c5 = tl.split(o0)
    c3, c7 = tl.split(o1)
    return (c0[:, None, :], c1[:, None, :], c2[:, None, :], c3[:, None, :], c4[:, None, :], c5[:, None, :],
            c6[:, None, :], c7[:, None, :])
