"""Quantized-linear GPU kernels (ember.quantization.kernels) == the dequantize-then-matmul reference: on CPU under
the Triton interpreter at tiny shapes, on the GPU at Qwen3-8B shapes; the dispatch; random quantized models."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest
import torch

needs_triton = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the GPU machine)")

CHECK = textwrap.dedent('''
    import sys, torch
    import torch.nn.functional as F
    from ember.quantization.formats import get_format
    from ember.quantization.kernels import dispatch
    from ember.quantization.kernels.dispatch import Config
    from ember.quantization.linear import QuantLinear
    from ember.quantization.random_quant import fill_random_

    device, dtype = sys.argv[1], getattr(torch, sys.argv[2])
    shapes, ms, configs = eval(sys.argv[3]), eval(sys.argv[4]), [Config(*c) for c in eval(sys.argv[5])]
    interp = device == "cpu"
    ALGOS = {"int4": ["W4A16_AWQ"], "nvfp4": ["NVFP4", "NVFP4_AWQ"], "fp8": ["FP8"],
             "fp8_rowwise": ["FP8_PER_CHANNEL_PER_TOKEN"], "int8_wo": ["W8A16"], "int8_sq": ["W8A8_SQ_PER_CHANNEL"],
             "w4a8": ["W4A8_AWQ"]}
    GROUPS = {"W4A16_AWQ": 128, "NVFP4": 16, "NVFP4_AWQ": 16, "W4A8_AWQ": 128}
    checked = 0
    for kind, algos in ALGOS.items():
        for algo in algos:
            fmt = get_format(algo, GROUPS.get(algo))
            for n, k in shapes:
                for bias in (False, True):
                    torch.manual_seed(checked)
                    layer = QuantLinear(fmt, k, [n - 16, 16], bias, dtype, device)
                    fill_random_(layer, torch.randn(n, k, device=device) * 0.05, act_amax=4.0)
                    if "pre_quant_scale" in fmt.specs:        # not ones: the kernel must apply it
                        assert layer.kernel_pqs is None       # ones are skipped
                        layer.pre_quant_scale.data.copy_(torch.rand(k, device=device) + 0.5)
                        layer.finalize_()
                        assert layer.kernel_pqs.dtype == dtype
                    if bias:
                        layer.bias.data.normal_()
                    t = {name: v.to(device) for name, v in layer.tensors().items()}   # (W4A8: some on host)
                    w = fmt.weight(t, layer.output_sizes).double()
                    if kind in dispatch.DENSE_ABOVE_M:        # the prefill path's dense weight: the reference's
                        from ember.quantization.kernels import dequant
                        dense = dequant.dense_weight(kind, layer, dtype)
                        assert torch.equal(dense, w.to(dtype)), (algo, n, k, (dense.double() - w).abs().max())
                        checked += 1
                    for m in ms:
                        x = torch.randn(m, k, device=device) * 2
                        if kind.startswith("fp8") and interp:  # why: the interpreter's e4m3 cast mis-rounds values
                            s = 2.0 ** -6                      # just below a power of two: use exact inputs
                            x = (x / s).clamp(-448, 448).to(torch.float8_e4m3fn).float() * s
                            x[:, 0] = 448 * s                  # per-token scale = amax / 448 = s too
                            if kind == "fp8":
                                layer.input_scale.data.fill_(s)
                        x = x.to(dtype)
                        if kind == "nvfp4":                   # GPU NVFP4 is weight-only (W4A16)
                            xa = x if "pre_quant_scale" not in t else x * t["pre_quant_scale"].to(dtype)
                        else:
                            xa = fmt.act(x, t)
                        ref = F.linear(xa.double(), w, None if layer.bias is None else layer.bias.double())
                        base = ((F.linear(xa, w.to(dtype), layer.bias).double() - ref).norm() / ref.norm()).item()
                        for cfg in configs:
                            if kind == "w4a8" and (cfg.kind not in ("mm", "ew", "h2") or interp):
                                continue                      # W4A8 runs its FP8 weight's paths (CUDA only)
                            if cfg.kind == "mm" and (interp or kind not in ("fp8", "fp8_rowwise", "int8_sq", "w4a8")
                                                     or (kind == "int8_sq" and m <= 16) or n % 16):
                                continue
                            if cfg.kind == "dq" and kind not in dispatch.DENSE_ABOVE_M:
                                continue
                            if cfg.kind in ("ew", "ew2", "h2") and m > cfg.block_m:
                                continue
                            four, fp8_weight = kind in ("int4", "nvfp4"), kind in ("fp8", "fp8_rowwise", "w4a8")
                            if cfg.kind == "ew" and four or cfg.kind == "h2" and not (four or fp8_weight):
                                continue                      # "ew": the 8-bit GEMV; "h2": 4-bit or FP8 weights
                            if (cfg.kind == "ew2" or cfg.split_k > 1 and cfg.kind != "h2") and not four:
                                continue
                            c = cfg._replace(block_k=min(cfg.block_k, k))
                            y = dispatch.run(kind, layer, x, c)
                            err = ((y.double() - ref).norm() / ref.norm()).item()
                            ok = y.shape == (m, n) and bool(torch.isfinite(y).all()) and err < 2 * base + 2e-3
                            assert ok, (algo, n, k, m, bias, cfg, err, base)
                            checked += 1
                    # the dispatch, as QuantLinear.forward uses it (CUDA only: None on CPU tensors)
                    x = torch.randn(3, k, device=device, dtype=dtype)
                    y = dispatch.quant_linear(layer, x)
                    none = interp or (dispatch.lookup(kind, n, k, 3) is None and layer.tinygemm is None)
                    assert (y is None) == none, (algo, n, k, y is None)   # None: shapes no kernel takes
    print("quant kernels ok", checked)
''')


def _run(device: str, dtype: str, shapes: str, ms: str, configs: str, env: dict) -> None:
    proc = subprocess.run([sys.executable, "-c", CHECK, device, dtype, shapes, ms, configs], env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "quant kernels ok" in proc.stdout


@needs_triton
def test_kernels_interpreter_cpu():
    """Every kernel and mode vs the reference: M 1..20 (several M blocks), N tails, bias, pre_quant_scale,
    block_k below and above the int4 group (the half2 GEMV: one scale a row, or two groups a step), split-K (the half2 GEMV's and tl.dot's) with 1, 2 and 4 splits (the
    half2 GEMV through its fp32 twin: the interpreter cannot run inline PTX; the GPU test runs the PTX), its
    double-buffered loads (num_stages 2), and the prefill path's dense weight (== the format's, bit for bit)."""
    _run("cpu", "float16", "[(48, 256)]", "[1, 3, 20]",
         "[('ew', 4, 8, 64, 4), ('ew', 4, 2, 256, 4), ('ew2', 4, 8, 64, 4), ('ew2', 4, 2, 256, 4), "
         "('h2', 4, 8, 64, 1, 1, 1), ('h2', 4, 16, 32, 2, 2, 2), ('h2', 4, 8, 256, 1, 2, 1), "
         "('dot', 16, 16, 64, 4, 1, 4), ('dot', 16, 16, 256, 4, 1), ('dot', 16, 32, 64, 4, 1), ('dot', 16, 16, 64, 4, 1, 2), ('dq', 0, 0, 0)]",
         {**os.environ, "TRITON_INTERPRET": "1"})


@pytest.mark.gpu
@needs_cuda
def test_kernels_gpu_qwen3_8b_shapes():
    _run("cuda", "bfloat16", "[(6144, 4096), (1000, 256)]", "[1, 3, 16, 300]",
         "[('ew', 1, 4, 256, 4), ('h2', 1, 64, 512, 4, 1, 4), ('h2', 4, 32, 256, 2, 1, 4), ('h2', 8, 32, 128, 2, 1, 4), ('ew2', 1, 4, 256, 4), "
         "('dot', 16, 64, 128, 4, 3), ('dot', 64, 32, 128, 4, 3, 2), ('dot', 16, 32, 128, 4, 3, 8), "
         "('mm', 0, 0, 0), ('dq', 0, 0, 0), ('h2', 1, 32, 128, 4, 2, 4), ('h2', 4, 64, 256, 4, 2, 4), "
         "('h2', 1, 32, 256, 4, 1, 4)]",
         dict(os.environ))


def test_dispatch_rules():
    from ember.quantization.kernels import dispatch

    assert [dispatch.m_bucket(m) for m in (1, 2, 3, 16, 17, 256, 257, 8192)] == [1, 2, 4, 16, 32, 256, 512, 512]
    assert dispatch.lookup("int4", 4096, 4096, 1).kind == "h2"         # (bf16 INT4 goes to tinygemm first)
    assert dispatch.lookup("nvfp4", 4096, 4096, 2).kind == "h2"        # no M = 2 row: the default
    assert dispatch.lookup("nvfp4", 6144, 4096, 7).kind == "dot"       # TMA tl.dot beat h2 at M = 8 (session 8)
    assert dispatch.lookup("nvfp4", 6144, 4096, 4).kind == "h2"
    assert dispatch.lookup("int4", 4096, 4096, 3).kind == "dot"        # h2 lost to tl.dot at M = 4
    assert dispatch.lookup("int4", 4096, 4096, 2).kind == "h2"         # ... and beat it at M = 2
    assert dispatch.lookup("int4", 1000, 2048, 1).block_k == 256       # whole groups a step (unmeasured shape)
    assert dispatch.lookup("int8_wo", 4096, 4096, 1).kind == "ew"
    assert dispatch.lookup("int4", 4096, 4096, 64).kind == "dot"
    assert dispatch.lookup("nvfp4", 4096, 12288, 8192).kind == "dq"   # prefill: dense weight + cuBLAS
    assert dispatch.lookup("int4", 1000, 256, 300).kind == "dq"        # (a shape the table never measured)
    assert dispatch.lookup("int4", 1000, 256, 200).kind == "dot"       # tl.dot beat the dense weight at 256
    assert dispatch.lookup("nvfp4", 4096, 4096 + 16, 16) is None       # K % 32: no 16-byte TMA box of weight
    assert dispatch.lookup("int8_wo", 4096, 4096, 256).kind == "dot"    # W8A16: tl.dot still won at 256
    assert dispatch.lookup("int8_wo", 4096, 4096, 8192).kind == "dq"
    assert dispatch.lookup("int8_sq", 4096, 4096, 8192).kind == "mm"    # W8A8 keeps its INT8 tensor cores
    assert dispatch.lookup("fp8", 4096, 4096, 1).kind == "h2"          # the FP8 half2 GEMV beat cuBLAS there
    assert dispatch.lookup("fp8", 6144, 4096, 8).kind == "mm"
    assert dispatch.lookup("fp8_rowwise", 1000, 256, 2).kind == "h2"    # unmeasured shapes: the defaults
    assert dispatch.lookup("fp8_rowwise", 1024, 256, 64).kind == "mm"   # rowwise-scaled cuBLAS ...
    assert dispatch.lookup("fp8_rowwise", 1000, 256, 64).kind == "dot"  # ... where it takes the shape (N % 16)
    assert dispatch.lookup("w4a8", 4096, 4096, 1) == dispatch.lookup("fp8", 4096, 4096, 1)   # its FP8 weight
    assert dispatch.lookup("int8_sq", 4096, 4096, 64).kind == "mm"
    assert dispatch.lookup("int8_sq", 4096, 4100, 64) is None          # _int_mm needs K % 8 (here % 16)
    assert dispatch.lookup("int4", 4096, 200, 8) is None                 # K not a multiple of 16
    assert dispatch.lookup("int4", 4096, 4096 + 64, 8).block_k == 64  # block_k shrinks to divide K


@needs_triton
def test_tma_rows_copies_only_what_tma_cannot_take():
    from ember.quantization.kernels.tiles import tma_rows, tma_weight

    x = torch.randn(4, 72)
    assert tma_rows(x, [4, 64]).base.data_ptr() == x.data_ptr()           # aligned rows: no copy
    kept = tma_rows(x[:, 4:68], [4, 64]).base                             # base 16 bytes in, stride 288: kept
    assert kept.data_ptr() == x[:, 4:].data_ptr()
    y = x[:, 1:65]                                                        # base 4 bytes in: copied
    desc = tma_rows(y, [4, 64])
    assert desc.base.is_contiguous() and torch.equal(desc.base, y) and desc.strides == [64, 1]
    one = x[1:2, 8:72]                                                    # one row: its stride(0) is not used
    assert tma_rows(one, [1, 64]).strides == [64, 1]
    assert tma_rows(x.view(2, 2, 72), [4, 64]).shape == [4, 72]           # [..., K] -> [M, K] rows
    with pytest.raises(ValueError, match="16-byte aligned"):
        tma_weight(torch.zeros(8, 40, dtype=torch.uint8), [8, 32])        # row stride 40 bytes


def test_cpu_forward_is_the_fallback():
    """On CPU (and with kernels off) QuantLinear runs dequantize-then-matmul, never a kernel."""
    from ember.quantization.formats import get_format
    from ember.quantization.kernels import dispatch
    from ember.quantization.linear import QuantLinear
    from ember.quantization.random_quant import fill_random_

    layer = QuantLinear(get_format("W4A16_AWQ", 128), 256, [64], False, torch.float32, "cpu")
    fill_random_(layer, torch.randn(64, 256) * 0.05)
    x = torch.randn(2, 256)
    assert dispatch.quant_linear(layer, x) is None
    torch.testing.assert_close(layer(x), x @ layer.dense_weight().T)


@pytest.mark.parametrize("method", ["fp8", "fp8-rowwise", "int8-wo", "int8-sq", "int4-awq", "nvfp4"])
def test_quantize_random_matches_dequant_matmul(method):
    """quantize_random_ on a tiny Qwen3: every target linear becomes a QuantLinear whose weight is the original
    quantized (small error) and whose forward is the format's dequant matmul."""
    from transformers import AutoConfig

    from ember.bench.model import build_random_model
    from ember.quantization.linear import QuantLinear
    from ember.quantization.random_quant import quantize_random_

    cfg = AutoConfig.for_model(**{"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": 128,
                                  "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
                                  "num_key_value_heads": 2, "head_dim": 32, "vocab_size": 300,
                                  "tie_word_embeddings": False})
    model = build_random_model(cfg, torch.float32, torch.device("cpu"), seed=1)
    before = {n: m.weight.detach().clone() for n, m in model.named_modules() if hasattr(m, "weight")
              and isinstance(m.weight, torch.Tensor) and m.weight.dim() == 2}
    swapped = quantize_random_(model, method)
    assert len(swapped) == 2 * 4 and not isinstance(model.lm_head, QuantLinear)   # qkv, o, gate_up, down
    for name, q in swapped.items():
        assert model.get_submodule(name) is q
        w = q.dense_weight(torch.float32)
        rel = ((w - before[name]).norm() / before[name].norm()).item()
        assert rel < 0.2, (name, rel)
        x = torch.randn(3, q.in_features)
        ref = torch.nn.functional.linear(q.format.act(x, q.tensors()), w)
        torch.testing.assert_close(q(x), ref)


ACT_QUANT = textwrap.dedent('''
    import torch
    from ember.quantization.kernels.act_quant import quantize_act

    torch.manual_seed(0)
    s = torch.tensor([2.0 ** -6])                       # exact inputs: see CHECK (interpreter e4m3 rounding)
    x = ((torch.randn(5, 200) * 2 / s).clamp(-448, 448).to(torch.float8_e4m3fn).float() * s).half()
    q = quantize_act(x, "fp8", s, None, pad_to=16)
    assert q.shape == (16, 200) and q.dtype == torch.float8_e4m3fn
    assert torch.equal(q[:5].float(), (x.float() / s).to(torch.float8_e4m3fn).float())
    pqs = torch.rand(200) + 0.5
    x = torch.randn(5, 200).half()
    q = quantize_act(x, "int8", torch.tensor([0.02]), pqs)
    ref = ((x * pqs.half()).float() / 0.02).round().clamp(-128, 127)
    assert q.dtype == torch.int8 and torch.equal(q.float(), ref)
    print("act quant ok")
''')


@needs_triton
def test_act_quant_kernel_interpreter_cpu():
    """The large-M quantize kernel (before cuBLAS FP8 / INT8) == the formats' activation quantization."""
    proc = subprocess.run([sys.executable, "-c", ACT_QUANT], env={**os.environ, "TRITON_INTERPRET": "1"},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "act quant ok" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-4000:]


@pytest.mark.gpu
@needs_cuda
def test_int4_tinygemm_matches_dequant_matmul_gpu():
    """INT4-AWQ at decode sizes runs aten's tinygemm on a repacked weight: == x @ dequant(W)^T (bf16 tolerance),
    with and without pre_quant_scale and bias, fused q/k/v shards included; larger M stays on Triton."""
    from ember.quantization.formats import get_format
    from ember.quantization.kernels import dispatch, tinygemm
    from ember.quantization.linear import QuantLinear
    from ember.quantization.random_quant import fill_random_

    torch.manual_seed(0)
    for sizes, bias, pqs in (([512, 256, 256], False, False), ([1024], True, True)):
        layer = QuantLinear(get_format("W4A16_AWQ", 128), 1024, sizes, bias, torch.bfloat16, "cuda")
        if bias:
            layer.bias.data.normal_()
        if pqs:
            layer.pre_quant_scale.data.uniform_(0.5, 2.0)
        fill_random_(layer, torch.randn(sum(sizes), 1024, device="cuda") * 0.05)
        assert layer.tinygemm is not None and tinygemm.supports(layer)
        for m in (1, 3, 16, 64):
            x = torch.randn(m, 1024, device="cuda", dtype=torch.bfloat16)
            ref = layer.format.act(x.float(), {k: v.float() for k, v in layer.tensors().items()}) \
                @ layer.dense_weight(torch.float32).T
            if bias:
                ref = ref + layer.bias.float()
            y = dispatch.quant_linear(layer, x)
            err = ((y.float() - ref).norm() / ref.norm()).item()
            assert err < 1e-2, (sizes, m, err)


def _random_gpu_layer(algo: str, group: int | None, n: int, k: int):
    """(a bf16 QuantLinear [n, k] of `algo` on CUDA with random quantized weights, the bytes it holds on the GPU)."""
    from ember.quantization.formats import get_format
    from ember.quantization.linear import QuantLinear
    from ember.quantization.random_quant import fill_random_

    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    layer = fill_random_(QuantLinear(get_format(algo, group), k, [n], False, torch.bfloat16, "cuda"),
                         torch.randn(n, k, device="cuda") * k ** -0.5)
    return layer, torch.cuda.memory_allocated() - before


@pytest.mark.gpu
@needs_cuda
def test_w4a8_gpu_layer_keeps_only_its_fp8_weight_on_the_gpu():
    """On CUDA the 4-bit tensors go to host memory once the FP8 weight is staged; every path still computes the
    format's result: the kernels, the dequantize fallback (kernels off), a second finalize_, and tensors()."""
    from ember.quantization.kernels import dispatch

    n, k = 512, 1024
    layer, held = _random_gpu_layer("W4A8_AWQ", 128, n, k)
    fmt = layer.format
    assert layer.weight.device.type == "cpu" and layer.weight_scale.device.type == "cpu"
    assert held < n * k * 1.25            # the e4m3 weight (1 byte a weight) and small scales, no 4-bit copy
    x = torch.randn(3, k, device="cuda", dtype=torch.bfloat16)
    t = {name: v.cuda() for name, v in layer.tensors().items()}
    ref = torch.nn.functional.linear(fmt.act(x, t).double(), fmt.weight(t, [n]).double())
    y = layer(x)
    dispatch.ENABLED = False
    try:
        y_fallback = layer(x)
    finally:
        dispatch.ENABLED = True
    layer.finalize_()                     # again: the host tensors come back first, then go again
    assert layer.weight.device.type == "cpu"
    for out in (y, y_fallback, layer(x)):
        assert ((out.double() - ref).norm() / ref.norm()).item() < 1e-2


@pytest.mark.gpu
@needs_cuda
def test_nvfp4_gpu_layer_holds_one_copy_and_decodes_through_the_half2_gemv():
    """NVFP4 on CUDA keeps only its checkpoint tensors (the half2 GEMV and tl.dot both read that layout: no repacked
    second copy), and decode-sized calls take the half2 GEMV, matching the dequantize-matmul reference."""
    from ember.quantization.kernels import dispatch

    n, k = 1024, 2048
    layer, held = _random_gpu_layer("NVFP4", 16, n, k)
    checkpoint = sum(v.numel() * v.element_size() for v in layer.tensors().values())
    assert held < checkpoint + 64 * 1024, (held, checkpoint)      # allocator rounding only
    for m in (1, 3):
        assert dispatch.lookup("nvfp4", n, k, m).kind == "h2"
        x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
        ref = torch.nn.functional.linear(x.double(), layer.dense_weight(torch.float64))
        assert ((layer(x).double() - ref).norm() / ref.norm()).item() < 1e-2
