"""FP8 (e4m3) KV cache: both backends equal attention over the dequantized cache, the engine runs it, checkpoint
k/v scales load, and the cache holds twice the tokens of a bf16 one.

The Triton checks run in a subprocess under TRITON_INTERPRET=1 on CPU (this file run as a script), so the order in
which pytest imports triton for other files never matters; on a GPU they run in-process at Qwen3-8B head shapes.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from ember.attention.kv_quant import FP8_KV_DTYPE, FP8_MAX, dequantize_kv, quantize_kv
from ember.attention.metadata import build_metadata
from ember.attention.torch_backend import TorchAttentionBackend
from ember.layers.attention import Attention
from paged_tables import shuffled_tables   # (tests/attention/paged_tables.py)

ON_GPU = torch.cuda.is_available()
HAS_TRITON = importlib.util.find_spec("triton") is not None
TOL = {torch.float32: 1e-4, torch.float16: 5e-3, torch.bfloat16: 2e-2}


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def fp8_step(backend_cls, query_lens, seq_lens, hq=4, hkv=2, d=32, block_size=16, dtype=torch.float32,
             sliding_window=None, soft_cap=None, min_split_tokens=None, seed=0, device="cpu", fp8_as_f16=None,
             prefill_tiles=None):
    """One step through `backend_cls` and the torch backend on the same e4m3 cache (shuffled block tables, some
    values beyond 448 * scale so the clamp is exercised); both must equal attention over the dequantized cache."""
    gen = torch.Generator().manual_seed(seed)
    tables, num_blocks = shuffled_tables(seq_lens, block_size, gen)
    k_scale, v_scale = torch.tensor(0.02), torch.tensor(0.05)        # amax 9 and 22: 3-sigma k values clip
    old = torch.randn(2, num_blocks, block_size, hkv, d, generator=gen) * torch.tensor([3.0, 7.0]).view(2, 1, 1, 1, 1)
    cache = torch.stack([quantize_kv(old[0], k_scale), quantize_kv(old[1], v_scale)]).to(device)
    t = sum(query_lens)
    q = torch.randn(t, hq, d, generator=gen).to(device, dtype)
    k = (torch.randn(t, hkv, d, generator=gen) * 3).to(device, dtype)
    v = (torch.randn(t, hkv, d, generator=gen) * 7).to(device, dtype)
    layer = Attention(0, hq, hkv, d, scale=d ** -0.5, sliding_window=sliding_window, logits_soft_cap=soft_cap)
    layer.set_kv_scales_(k_scale, v_scale)
    layer.kv_scales_to_(device)

    def run(backend, kv_cache, k_in, v_in):
        meta = build_metadata(backend, [kv_cache], block_size, query_lens, seq_lens, tables, device)
        return backend.forward(layer, q, k_in, v_in, kv_cache, meta), meta

    ref_cache, got_cache = cache.clone(), cache.clone()
    ref, meta = run(TorchAttentionBackend(device, dtype), ref_cache, k, v)
    backend = backend_cls(device, dtype)
    if min_split_tokens is not None:
        backend.min_split_tokens = min_split_tokens
    if fp8_as_f16 is not None:   # the triton backend's choice of dot dtype for e4m3 tiles (default: fp16)
        backend.fp8_decode_config = replace(backend.fp8_decode_config, fp8_as_f16=fp8_as_f16)
        backend.fp8_prefill_config = replace(backend.fp8_prefill_config, fp8_as_f16=fp8_as_f16)
    if prefill_tiles is not None:   # (block_m, block_n): small tiles reach the unmasked interior at tiny shapes
        block_m, block_n = prefill_tiles
        backend.fp8_prefill_config = replace(backend.fp8_prefill_config, block_m=block_m, block_n=block_n)
    got, _ = run(backend, got_cache, k, v)
    assert got_cache.dtype == FP8_KV_DTYPE
    differ = (got_cache.view(torch.uint8) != ref_cache.view(torch.uint8)).float().mean().item()
    # CPU: bit-exact. CUDA: Triton's fp32 division may differ from torch's in the last bit near a rounding midpoint.
    assert differ <= (1e-3 if device == "cuda" else 0.0), f"{differ:.2%} of the cache bytes differ"

    # The reference: the same step over a cache in q's dtype holding the dequantized e4m3 values.
    deq = torch.stack([dequantize_kv(ref_cache[0], layer.k_scale, dtype), dequantize_kv(ref_cache[1], layer.v_scale,
                                                                                         dtype)])
    flat = deq.view(2, -1, hkv, d)
    want, _ = run(TorchAttentionBackend(device, dtype), deq.clone(), flat[0][meta.slot_mapping],
                  flat[1][meta.slot_mapping])
    assert _rel(ref, want) < TOL[dtype], "torch backend fp8 != attention over the dequantized cache"
    err = _rel(got, want)
    assert err < TOL[dtype], f"{backend_cls.__name__} fp8: relative error {err:.2e}"
    return got


# -- torch reference ------------------------------------------------------------------------------------------------
def test_quantize_kv_saturates_and_rounds_to_e4m3():
    x = torch.tensor([0.0, 1.0, 17.0, -31.4, 500.0, -1e4, 1e-3])
    q = quantize_kv(x, torch.tensor(0.5))
    back = dequantize_kv(q, torch.tensor(0.5), torch.float32)
    assert q.dtype == FP8_KV_DTYPE and back.abs().max() == FP8_MAX * 0.5          # |x / scale| > 448 clamps
    ok = x.abs() / 0.5 < FP8_MAX
    assert torch.all((back[ok] - x[ok]).abs() <= x[ok].abs() / 16 + 2 ** -10)    # 3 mantissa bits, subnormals


@pytest.mark.parametrize("query_lens,seq_lens,window,cap", [
    ([1, 1, 1], [5, 40, 77], None, None), ([1, 19, 23], [50, 45, 23], 9, None), ([7, 1], [30, 12], None, 5.0)])
def test_torch_backend_fp8_equals_dequantized_attention(query_lens, seq_lens, window, cap):
    fp8_step(TorchAttentionBackend, query_lens, seq_lens, sliding_window=window, soft_cap=cap)


# -- triton ---------------------------------------------------------------------------------------------------------
CPU_CASES = [   # (query_lens, seq_lens, kwargs): decode with and without splits, prefill chunks, GQA, window, cap
    ([1, 1, 1], [5, 40, 77], dict(hq=4, hkv=1)),
    ([1, 1], [70, 100], dict(hq=8, hkv=2, min_split_tokens=16, sliding_window=50)),
    ([1, 19, 23, 6], [50, 45, 23, 38], dict(hq=8, hkv=2, block_size=32, seed=1)),
    ([1, 12], [90, 70], dict(hq=4, hkv=4, soft_cap=5.0, min_split_tokens=16, seed=2)),
    ([1, 9], [20, 30], dict(hq=8, hkv=2, dtype=torch.bfloat16, seed=3)),                      # fp16 dots
    ([1, 9], [20, 30], dict(hq=8, hkv=2, dtype=torch.bfloat16, seed=3, fp8_as_f16=False)),    # tiles -> q dtype
    ([1, 1, 7], [33, 64, 40], dict(hq=4, hkv=2, dtype=torch.float16, min_split_tokens=16, seed=5)),
    ([1, 5], [21, 37], dict(hq=2, hkv=1, d=80, seed=4)),
    ([40, 1, 23], [60, 70, 23], dict(hq=8, hkv=2, dtype=torch.bfloat16, sliding_window=24, seed=6,
                                     prefill_tiles=(16, 16))),
]


def _triton_cases_on_cpu() -> None:
    """Run as a script with TRITON_INTERPRET=1 (see the test below)."""
    from ember.attention.triton_backend import TritonAttentionBackend

    for query_lens, seq_lens, kw in CPU_CASES:
        fp8_step(TritonAttentionBackend, query_lens, seq_lens, **kw)
    # the padding slot (-1) of a CUDA-graph batch is skipped by the quantizing write too
    backend = TritonAttentionBackend("cpu", torch.float32)
    cache = torch.zeros(2, 2, 4, 1, 8, dtype=FP8_KV_DTYPE)
    k = torch.full((2, 1, 8), 3.0)
    backend.write_kv(cache, k, 2 * k, torch.tensor([5, -1]), torch.tensor(0.5), torch.tensor(2.0))
    flat = cache.float().view(2, 8, 8)
    assert flat[0, 5].eq(6.0).all() and flat[1, 5].eq(3.0).all() and flat.sum() == 8 * 9
    print(f"fp8 triton ok {len(CPU_CASES)}")


@pytest.mark.skipif(not HAS_TRITON, reason="needs triton (pip install triton)")
@pytest.mark.skipif(ON_GPU, reason="CPU interpreter run; the GPU runs the gpu-marked tests")
def test_triton_fp8_matches_torch_under_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert f"fp8 triton ok {len(CPU_CASES)}" in proc.stdout


@pytest.mark.gpu
@pytest.mark.skipif(not (ON_GPU and HAS_TRITON), reason="needs a CUDA GPU and triton")
@pytest.mark.parametrize("window,f16", [(None, True), (1000, True), (None, False)])
def test_gpu_fp8_qwen3_shape(window, f16):
    from ember.attention.triton_backend import TritonAttentionBackend

    kw = dict(hq=32, hkv=8, d=128, dtype=torch.bfloat16, sliding_window=window, device="cuda", fp8_as_f16=f16)
    fp8_step(TritonAttentionBackend, [1] * 6, [1, 17, 300, 1024, 2500, 4097], seed=6, **kw)
    fp8_step(TritonAttentionBackend, [1, 300, 1, 77], [3000, 800, 12, 77], seed=7, **kw)


@pytest.mark.gpu
@pytest.mark.skipif(not (ON_GPU and HAS_TRITON), reason="needs a CUDA GPU and triton")
@pytest.mark.parametrize("query_lens,seq_lens", [([1] * 8, [4096] * 8), ([512, 1, 700], [512, 2048, 900])])
def test_gpu_fp8_close_to_bf16_cache(query_lens, seq_lens):
    """Calibrated scales (amax / 448) through e4m3 vs a bf16 cache: the fp8 error stays small (fp32 reference of
    the same random data on CPU: k 2.6 %, attention output 3.8 % relative error)."""
    from ember.attention.triton_backend import TritonAttentionBackend

    hq, hkv, d, bs, dev = 32, 8, 128, 16, "cuda"
    gen = torch.Generator(device=dev).manual_seed(0)
    tables, start = [], 0
    for s in seq_lens:
        tables.append(list(range(start, start + -(-s // bs))))
        start += len(tables[-1])
    outs = {}
    for kv_dtype in (torch.bfloat16, FP8_KV_DTYPE):
        gen.manual_seed(0)
        t = sum(query_lens)
        q = torch.randn(t, hq, d, device=dev, generator=gen, dtype=torch.bfloat16)
        keys = torch.randn(start * bs, hkv, d, device=dev, generator=gen, dtype=torch.bfloat16)
        vals = torch.randn(start * bs, hkv, d, device=dev, generator=gen, dtype=torch.bfloat16)
        layer = Attention(0, hq, hkv, d, scale=d ** -0.5)
        layer.set_kv_scales_(keys.float().abs().max() / FP8_MAX, vals.float().abs().max() / FP8_MAX)
        layer.kv_scales_to_(dev)
        backend = TritonAttentionBackend(dev, torch.bfloat16)
        cache = torch.zeros(2, start, bs, hkv, d, device=dev, dtype=kv_dtype)
        backend.write_kv(cache, keys, vals, torch.arange(start * bs, device=dev), layer.k_scale, layer.v_scale)
        slots = torch.cat([torch.arange(s - n, s, device=dev) + tables[i][0] * bs
                           for i, (n, s) in enumerate(zip(query_lens, seq_lens))])
        meta = build_metadata(backend, [cache], bs, query_lens, seq_lens, tables, dev)
        outs[kv_dtype] = backend.forward(layer, q, keys[slots], vals[slots], cache, meta)
    err = _rel(outs[FP8_KV_DTYPE], outs[torch.bfloat16])
    assert 0 < err < 0.06, f"fp8 vs bf16 cache relative error {err:.3f}"


# -- checkpoint scales, engine, capacity ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fp8_kv_ckpt(tmp_path_factory):
    """A tiny Llama through `ember quantize --method fp8 --kv-cache fp8` (calibrated per-layer k/v scales)."""
    import random

    from ember.models.llama import LlamaForCausalLM
    from ember.plugins import get_plugin_manager, get_registry
    from ember.plugins.testing import tiny_checkpoint
    from ember.quantization.workbench import QuantizeOptions, quantize
    import ember.quantization.plugin as plugin

    if ("quant_recipe", "fp8") not in get_registry() and ("calib_dataset", "lee-news") not in get_registry():
        get_plugin_manager().add_plugin(plugin, name="ember-quantization", distribution="ember")
    root = tmp_path_factory.mktemp("fp8-kv")
    tiny_checkpoint("LlamaForCausalLM", root / "model",
                    {**LlamaForCausalLM.tiny_config, "hidden_size": 128, "intermediate_size": 256},
                    initializer_range=0.05)   # why: 0.3 (the default) makes a chaotic model that amplifies any error
    rng = random.Random(0)
    words = root / "words.txt"
    words.write_text("\n\n".join(" ".join(f"w{rng.randint(3, 319)}" for _ in range(200)) for _ in range(20)))
    quantize(root / "model", "fp8", root / "out", QuantizeOptions(
        calib=str(words), calib_size=4, calib_seq_len=64, kv_cache="fp8", eval_dataset=None, progress=False))
    return root / "out"


def _layer_scales(model) -> list[tuple[float, float]]:
    layers = sorted((m for m in model.modules() if isinstance(m, Attention)), key=lambda m: m.layer_idx)
    return [(float(m.k_scale), float(m.v_scale)) for m in layers]


def test_checkpoint_scales_load_and_auto_picks_fp8(fp8_kv_ckpt):
    from safetensors.torch import load_file

    from ember import LLM

    tensors = load_file(fp8_kv_ckpt / "model.safetensors")
    llm = LLM(fp8_kv_ckpt, device="cpu", max_num_seqs=2)
    want = [(float(tensors[f"model.layers.{i}.self_attn.k_proj.k_scale"]),
             float(tensors[f"model.layers.{i}.self_attn.v_proj.v_scale"])) for i in range(len(llm.engine.runner.layers))]
    assert _layer_scales(llm.model) == want and all(k != 1.0 and v != 1.0 for k, v in want)
    assert all(m.kv_scales_calibrated for m in llm.engine.runner.layers)
    assert llm.engine.runner.kv_caches[0].dtype == FP8_KV_DTYPE          # "auto": the checkpoint declares FP8
    opt_out = LLM(fp8_kv_ckpt, device="cpu", max_num_seqs=2, kv_cache_dtype="float32")
    assert opt_out.engine.runner.kv_caches[0].dtype == torch.float32


def test_other_exporters_scale_names_load(fp8_kv_ckpt, tmp_path):
    """llm-compressor writes `self_attn.k_scale`; a scale that matches no layer is an error, not silently dropped."""
    import shutil

    from safetensors.torch import load_file, save_file

    from ember.loader.build import load_model
    from ember.loader.weights import CheckpointError

    ref = _layer_scales(load_model(fp8_kv_ckpt, torch.float32, "cpu"))
    edits = {
        "renamed": lambda t: {k.replace("_proj.k_scale", "_scale").replace("_proj.v_scale", "_scale"): v
                              for k, v in t.items()},
        "stray": lambda t: {**t, "model.layers.0.mlp.k_scale": torch.tensor(0.5)},
        "unpaired": lambda t: {k: v for k, v in t.items() if k != "model.layers.1.self_attn.k_proj.k_scale"},
    }
    errors = {"stray": "match no attention layer", "unpaired": "has a v_scale but no k_scale"}
    for name, edit in edits.items():
        out = tmp_path / name
        shutil.copytree(fp8_kv_ckpt, out)
        save_file(edit(load_file(out / "model.safetensors")), str(out / "model.safetensors"))
        if name in errors:
            with pytest.raises(CheckpointError, match=errors[name]):
                load_model(out, torch.float32, "cpu")
        else:
            assert _layer_scales(load_model(out, torch.float32, "cpu")) == ref


def test_engine_fp8_decode_equals_fp8_prefill_and_tracks_fp32(fp8_kv_ckpt):
    """Greedy decode step by step over the e4m3 cache (calibrated scales != 1, so a dropped scale shows) gives the
    logprobs of one prefill over the same quantized k/v; and stays near the fp32-cache model."""
    from ember import LLM, SamplingParams
    from ember.evaluation import PrefillRunner

    llm = LLM(fp8_kv_ckpt, device="cpu", max_num_seqs=4, kv_cache_dtype="fp8")
    outs = llm.generate(["w5 w6 w7", "w100 w3 w44 w9 w10", "w1"], SamplingParams(max_tokens=12, temperature=0.0,
                                                                                  logprobs=1))
    drift = []
    for kv_dtype in ("fp8", "float32"):
        runner = PrefillRunner(llm.model, max_seqs=1, max_len=64, kv_cache_dtype=kv_dtype)
        for o in outs:
            toks, n = o.outputs[0].token_ids, len(o.prompt_token_ids)
            hidden = runner.hidden([list(o.prompt_token_ids) + list(toks)])[0]
            lp = torch.log_softmax(llm.model.compute_logits(hidden[n - 1:-1]), -1)     # [len(toks), V]
            diff = [abs(lp[i, t].item() - o.outputs[0].logprobs[i][t]) for i, t in enumerate(toks)]
            if kv_dtype == "fp8":
                assert max(diff) < 1e-4, "engine decode over the fp8 cache != prefill over the same fp8 k/v"
            else:
                drift += diff
    # measured 0.024 mean (max 0.065); dropping the calibrated scales (about 0.01) gives far more
    assert 0 < sum(drift) / len(drift) < 0.06, f"mean |logprob| drift fp8 vs fp32 cache {sum(drift) / len(drift)}"


@pytest.mark.gpu
@pytest.mark.skipif(not (ON_GPU and HAS_TRITON), reason="needs a CUDA GPU and triton")
def test_gpu_engine_fp8_cuda_graphs_equal_eager(fp8_kv_ckpt):
    """The triton fp8 path under CUDA-graph replay (scales read on the device) == eager launches."""
    from ember import LLM, SamplingParams

    params = SamplingParams(max_tokens=16, temperature=0.0, logprobs=1)
    prompts = ["w5 w6 w7", "w100 w3 w44 w9 w10", "w1", "w7 w8"]
    runs = [LLM(fp8_kv_ckpt, device="cuda", max_num_seqs=4, cuda_graphs=g).generate(prompts, params)
            for g in (True, False)]
    for a, b in zip(*runs):
        assert a.outputs[0].token_ids == b.outputs[0].token_ids
        for la, lb, t in zip(a.outputs[0].logprobs, b.outputs[0].logprobs, a.outputs[0].token_ids):
            assert abs(la[t] - lb[t]) < 1e-3


def test_fp8_cache_holds_twice_the_tokens_of_bf16(tiny_llama_dir):
    from ember.config import EngineConfig, KvCacheConfig
    from ember.engine.model_runner import ModelRunner
    from ember.loader.build import load_model

    model = load_model(tiny_llama_dir, torch.bfloat16, "cpu")
    blocks = {}
    for kv_dtype in ("auto", "fp8"):   # the free-memory budget of the CPU sizing: cpu_kv_cache_gb
        config = EngineConfig(max_num_seqs=10**6, kv_cache=KvCacheConfig(cpu_kv_cache_gb=1 / 1024),
                              kv_cache_dtype=kv_dtype)
        runner = ModelRunner(model, config, torch.device("cpu"), torch.bfloat16, max_model_len=128)
        blocks[kv_dtype] = runner.num_blocks
        assert runner.kv_caches[0].dtype == (FP8_KV_DTYPE if kv_dtype == "fp8" else torch.bfloat16)
    assert blocks["fp8"] == 2 * blocks["auto"]


def test_bad_kv_cache_dtype_is_a_clear_error():
    from ember.config import EngineConfig

    with pytest.raises(ValueError, match="kv_cache_dtype must be one of"):
        EngineConfig(kv_cache_dtype="int4")


if __name__ == "__main__":
    _triton_cases_on_cpu()
