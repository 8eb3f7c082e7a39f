"""The triton backend gives the torch reference's results (and cache contents) for every kind of step.

Without CUDA the kernels run in Triton's interpreter (TRITON_INTERPRET=1) on CPU tensors at tiny shapes. Triton
reads the variable when @triton.jit decorates (its own standard library at `import triton`, our kernels at import)
and again at each call, so it is set only while triton and the kernels are imported and, through monkeypatch,
during this file's tests: other test files never see the variable.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys

import pytest
import torch

from ember.attention.metadata import build_metadata
from ember.attention.torch_backend import TorchAttentionBackend
from ember.layers.attention import Attention
from paged_tables import shuffled_tables   # (tests/attention/paged_tables.py)

if importlib.util.find_spec("triton") is None:
    pytest.skip("the triton attention backend needs triton (pip install triton)", allow_module_level=True)

ON_GPU = torch.cuda.is_available()
DEVICE = "cuda" if ON_GPU else "cpu"
if not ON_GPU and "triton" in sys.modules and not os.environ.get("TRITON_INTERPRET"):
    pytest.skip("triton was imported before this file could turn on its CPU interpreter: run this file alone, "
                "or with TRITON_INTERPRET=1", allow_module_level=True)


def _load_backend():
    if ON_GPU:
        from ember.attention.triton_backend import TritonAttentionBackend
        return TritonAttentionBackend
    old = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        import triton  # noqa: F401 - its standard library must be decorated in interpreter mode
        importlib.reload(importlib.import_module("ember.attention.triton_kernels"))
        from ember.attention.triton_backend import TritonAttentionBackend
    finally:
        if old is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = old
    return TritonAttentionBackend


TritonAttentionBackend = _load_backend()
from ember.attention.triton_backend import KernelConfig  # noqa: E402 - after the interpreter-mode import above


@pytest.fixture(autouse=True)
def _interpret_on_cpu(monkeypatch):
    if not ON_GPU:
        monkeypatch.setenv("TRITON_INTERPRET", "1")
TOL = {torch.float32: 1e-4, torch.float16: 5e-3, torch.bfloat16: 2e-2}


def compare_step(query_lens, seq_lens, hq=4, hkv=1, d=32, block_size=16, dtype=torch.float32, sliding_window=None,
                 soft_cap=None, min_split_tokens=None, seed=0, device=DEVICE, **backend_attrs):
    """Run one engine step through both backends on identical caches with shuffled block tables; compare.
    `backend_attrs` are set on the triton backend (prefill_config, num_sms, ...)."""
    gen = torch.Generator().manual_seed(seed)
    tables, num_blocks = shuffled_tables(seq_lens, block_size, gen)
    cache = torch.randn(2, num_blocks, block_size, hkv, d, generator=gen).to(device, dtype)
    t = sum(query_lens)
    q, k, v = (torch.randn(t, h * d, generator=gen).to(device, dtype) for h in (hq, hkv, hkv))
    layer = Attention(0, hq, hkv, d, scale=d ** -0.5, sliding_window=sliding_window, logits_soft_cap=soft_cap)

    ref_cache, tri_cache = cache.clone(), cache.clone()
    ref = TorchAttentionBackend(device, dtype)
    tri = TritonAttentionBackend(device, dtype)
    if min_split_tokens is not None:
        tri.min_split_tokens = min_split_tokens
    for name, value in backend_attrs.items():
        setattr(tri, name, value)
    want = layer(q, k, v, build_metadata(ref, [ref_cache], block_size, query_lens, seq_lens, tables, device))
    got = layer(q, k, v, build_metadata(tri, [tri_cache], block_size, query_lens, seq_lens, tables, device))
    assert torch.equal(tri_cache, ref_cache)
    err = float((got.double() - want.double()).norm() / want.double().norm())
    assert err < TOL[dtype], f"relative error {err:.2e}"
    return tri


@pytest.mark.parametrize("hq,hkv,block_size,window,cap", [
    (4, 4, 16, None, None), (4, 1, 32, None, None), (8, 2, 16, 9, None), (4, 1, 16, None, 5.0), (4, 4, 32, 20, 3.0)])
@pytest.mark.parametrize("split", [False, True])
def test_decode_only(hq, hkv, block_size, window, cap, split):
    compare_step([1, 1, 1], [5, 40, 77], hq=hq, hkv=hkv, block_size=block_size, sliding_window=window, soft_cap=cap,
                 min_split_tokens=16 if split else None)


def test_decode_splits_happen():
    tri = compare_step([1], [100], min_split_tokens=16)
    assert tri._num_splits(_Meta(100), None, 1, programs=1, per_sm=tri.decode_config.programs_per_sm) > 1


@pytest.mark.parametrize("hq,hkv,block_size,window,cap", [
    (4, 4, 16, None, None), (4, 1, 32, None, None), (8, 2, 16, 6, None), (4, 1, 32, 11, 5.0)])
def test_mixed_prefill_chunks_with_cached_prefixes(hq, hkv, block_size, window, cap):
    # decode token, chunk on a cached prefix, fresh prefill, chunk that ends mid-block
    compare_step([1, 19, 23, 6], [50, 45, 23, 38], hq=hq, hkv=hkv, block_size=block_size, sliding_window=window,
                 soft_cap=cap, seed=1)


def test_mixed_step_with_splits():
    compare_step([1, 12], [90, 70], hkv=2, hq=8, min_split_tokens=16, sliding_window=50, seed=2)


# 4 queries x 4 heads per tile, 16-key blocks: prompts span many blocks, so the unmasked interior, the masked
# diagonal, the window's lower edge (window 3 is narrower than a tile) and key splits all run.
SMALL_TILES = KernelConfig(block_m=16, block_n=16, num_warps=4, num_stages=2, mask_edges_only=True)


@pytest.mark.parametrize("window,cap", [(None, None), (20, None), (3, None), (None, 5.0), (37, 3.0)])
def test_prefill_small_tiles(window, cap):
    # fresh prefill, chunks on cached prefixes at several offsets from the 16-key grid (one ends on a page
    # boundary), a decode token
    compare_step([70, 37, 20, 11, 1, 16], [70, 90, 74, 62, 61, 64], hq=8, hkv=2, block_size=8,
                 sliding_window=window, soft_cap=cap, prefill_config=SMALL_TILES, seed=9)
    # few programs on many SMs: prefill tiles split their keys too (empty splits past the end included)
    compare_step([9, 30], [100, 30], hq=8, hkv=2, sliding_window=window, soft_cap=cap, prefill_config=SMALL_TILES,
                 num_sms=64, min_split_tokens=16, seed=10)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision(dtype):
    compare_step([1, 1], [33, 60], dtype=dtype, hq=8, hkv=2, seed=3)
    compare_step([1, 9], [20, 30], dtype=dtype, hq=8, hkv=2, seed=4)


@pytest.mark.parametrize("d", [64, 80, 128, 256])
def test_head_dims(d):
    compare_step([1, 5], [21, 37], hq=2, hkv=1, d=d, seed=5)


def test_unsupported_head_dim_is_a_clear_error():
    with pytest.raises(ValueError, match="head_dim"):
        compare_step([1], [4], d=512)


def test_padding_slots_are_skipped():
    tri = TritonAttentionBackend(DEVICE, torch.float32)
    cache = torch.zeros(2, 2, 4, 1, 8, device=DEVICE)
    k = torch.ones(2, 1, 8, device=DEVICE)
    tri.write_kv(cache, k, 2 * k, torch.tensor([5, -1], device=DEVICE))
    assert cache.view(2, 8, 8)[0, 5].eq(1).all() and cache.view(2, 8, 8)[1, 5].eq(2).all()
    assert cache.sum() == 8 * 3


@pytest.mark.gpu
@pytest.mark.skipif(not ON_GPU, reason="needs a CUDA GPU")
@pytest.mark.parametrize("window", [None, 1000])
def test_gpu_qwen3_shape(window):
    compare_step([1] * 6, [1, 17, 300, 1024, 2500, 4097], hq=32, hkv=8, d=128, dtype=torch.bfloat16,
                 sliding_window=window, seed=6)
    compare_step([1, 300, 1, 77], [3000, 800, 12, 77], hq=32, hkv=8, d=128, dtype=torch.bfloat16,
                 sliding_window=window, seed=7)


@pytest.mark.gpu
@pytest.mark.skipif(not ON_GPU, reason="needs a CUDA GPU")
def test_gpu_gemma_head_dim_soft_cap():
    compare_step([1, 1, 130], [900, 2048, 600], hq=8, hkv=4, d=256, dtype=torch.bfloat16, soft_cap=50.0,
                 sliding_window=512, seed=8)


class _Meta:
    def __init__(self, seq_len):
        self.max_seq_len = seq_len


@pytest.mark.gpu
@pytest.mark.skipif(not ON_GPU, reason="needs a CUDA GPU")
@pytest.mark.parametrize("window", [None, 200])
def test_gpu_fresh_prompts_take_the_sdpa_route(window, monkeypatch):
    """Fresh prompts (two of one length: one SDPA call for both) run PyTorch's SDPA (sdpa_prefill.py), checked
    against the torch reference like every other step; a sliding window keeps the paged kernel."""
    from ember.attention import sdpa_prefill

    calls = []
    real = sdpa_prefill.attend
    monkeypatch.setattr(sdpa_prefill, "attend", lambda *a: calls.append(1) or real(*a))
    lens = [1024, 1024, 700, 530, 300]
    compare_step(lens, lens, hq=32, hkv=8, d=128, dtype=torch.bfloat16, sliding_window=window, seed=9)
    assert len(calls) == (1 if window is None else 0)
    compare_step([512, 512], [512, 512], hq=8, hkv=8, d=64, dtype=torch.float16, seed=10)   # one run, no GQA
    assert len(calls) == (2 if window is None else 1)
