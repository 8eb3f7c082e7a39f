"""Which prefill steps the SDPA route takes (ember.attention.sdpa_prefill); its numerics are
checked on the GPU against the torch reference (tests/attention/test_triton_backend.py)."""

from __future__ import annotations

import torch

from ember.attention import sdpa_prefill
from ember.attention.metadata import build_metadata
from ember.attention.torch_backend import TorchAttentionBackend
from ember.layers.attention import Attention


def meta(query_lens, seq_lens):
    backend = TorchAttentionBackend("cpu", torch.float32)
    tables = [list(range(i * 64, i * 64 + -(-s // 16))) for i, s in enumerate(seq_lens)]
    cache = torch.zeros(2, 64 * len(seq_lens), 16, 1, 8)
    return build_metadata(backend, [cache], 16, query_lens, seq_lens, tables, "cpu")


def test_only_whole_fresh_prompts_long_enough_route():
    n = sdpa_prefill.MIN_TOKENS_PER_SEQ
    assert sdpa_prefill.fresh_prompts(meta([n, n + 8], [n, n + 8]))
    assert not sdpa_prefill.fresh_prompts(meta([n, n], [n + 40, n]))         # a cached prefix: paged kernel
    assert not sdpa_prefill.fresh_prompts(meta([1, 1], [n, n]))              # decode
    assert not sdpa_prefill.fresh_prompts(meta([n // 4, n // 4], [n // 4, n // 4]))   # short prompts


def test_cpu_tensors_never_route():
    n = sdpa_prefill.MIN_TOKENS_PER_SEQ
    layer = Attention(0, 2, 1, 8, scale=8 ** -0.5)
    q = torch.zeros(2 * n, 2, 8)
    assert not sdpa_prefill.eligible(layer, q, False, meta([n, n], [n, n]))
