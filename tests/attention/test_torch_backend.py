"""The reference paged attention equals dense causal attention, for every way a batch can be cut into blocks."""

from __future__ import annotations

import math

import pytest
import torch

from ember.attention.metadata import build_metadata
from ember.attention.torch_backend import TorchAttentionBackend
from ember.layers.attention import Attention


def dense_attention(q, k, v, scale, sliding_window=None, soft_cap=None):
    """q [S, Hq, D], k/v [S, Hkv, D] of ONE whole sequence -> [S, Hq, D], computed the textbook way."""
    group = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(group, dim=1)
    v = v.repeat_interleave(group, dim=1)
    scores = torch.einsum("qhd,khd->hqk", q, k) * scale
    if soft_cap is not None:
        scores = soft_cap * torch.tanh(scores / soft_cap)
    s = q.shape[0]
    pos = torch.arange(s)
    allowed = pos[None, :] <= pos[:, None]
    if sliding_window is not None:
        allowed &= (pos[:, None] - pos[None, :]) < sliding_window
    scores = scores.masked_fill(~allowed, float("-inf"))
    return torch.einsum("hqk,khd->qhd", scores.softmax(-1), v)


def run_in_steps(layer, q, k, v, chunks, block_size, num_blocks=32, shuffle_blocks=True):
    """Feed one sequence through the paged cache in `chunks` (token counts), return the concatenated outputs."""
    gen = torch.Generator().manual_seed(0)
    hkv, d = k.shape[1], k.shape[2]
    cache = torch.zeros(2, num_blocks, block_size, hkv, d)
    order = torch.randperm(num_blocks, generator=gen).tolist() if shuffle_blocks else list(range(num_blocks))
    needed = math.ceil(q.shape[0] / block_size)
    table = order[:needed]
    backend = TorchAttentionBackend("cpu", torch.float32)
    outs, done = [], 0
    for n in chunks:
        meta = build_metadata(backend, [cache], block_size, [n], [done + n], [table], "cpu")
        outs.append(layer(q[done:done + n].flatten(1), k[done:done + n].flatten(1), v[done:done + n].flatten(1), meta))
        done += n
    return torch.cat(outs).view_as(q)


@pytest.mark.parametrize("chunks", [[13], [5, 8], [1] * 13, [4, 1, 1, 7]])
@pytest.mark.parametrize("sliding_window", [None, 4])
@pytest.mark.parametrize("soft_cap", [None, 5.0])
def test_paged_equals_dense(chunks, sliding_window, soft_cap):
    torch.manual_seed(1)
    s, hq, hkv, d = 13, 4, 2, 8
    q, k, v = torch.randn(s, hq, d), torch.randn(s, hkv, d), torch.randn(s, hkv, d)
    layer = Attention(0, hq, hkv, d, scale=d ** -0.5, sliding_window=sliding_window, logits_soft_cap=soft_cap)
    got = run_in_steps(layer, q, k, v, chunks, block_size=4)
    want = dense_attention(q, k, v, d ** -0.5, sliding_window, soft_cap)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_mixed_batch_matches_each_sequence_alone():
    """A decode token of one sequence and a prefill chunk of another in one step give their solo results."""
    torch.manual_seed(2)
    hq, hkv, d, bs = 4, 1, 8, 4
    layer = Attention(0, hq, hkv, d, scale=0.3)
    backend = TorchAttentionBackend("cpu", torch.float32)
    cache = torch.zeros(2, 16, bs, hkv, d)
    a = [torch.randn(6, h, d) for h in (hq, hkv, hkv)]  # sequence A: 5 cached tokens + 1 decode token
    b = [torch.randn(7, h, d) for h in (hq, hkv, hkv)]  # sequence B: fresh 7-token prefill
    table_a, table_b = [3, 9], [0, 5]
    meta = build_metadata(backend, [cache], bs, [5], [5], [table_a], "cpu")
    layer(*(t[:5].flatten(1) for t in a), meta)  # fill A's first five tokens
    meta = build_metadata(backend, [cache], bs, [1, 7], [6, 7], [table_a, table_b], "cpu")
    q, k, v = (torch.cat([x[5:], y]).flatten(1) for x, y in zip(a, b))
    out = layer(q, k, v, meta).view(8, hq, d)
    torch.testing.assert_close(out[:1], dense_attention(*a, 0.3)[5:], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[1:], dense_attention(*b, 0.3), atol=1e-5, rtol=1e-5)


def test_slot_mapping_follows_block_table():
    backend = TorchAttentionBackend("cpu", torch.float32)
    cache = torch.zeros(2, 8, 4, 1, 2)
    meta = build_metadata(backend, [cache], 4, [3, 1], [6, 2], [[7, 2], [5]], "cpu")
    # sequence 0: positions 3,4,5 -> block 7 offset 3, block 2 offsets 0,1; sequence 1: position 1 -> block 5 offset 1
    assert meta.slot_mapping.tolist() == [7 * 4 + 3, 2 * 4 + 0, 2 * 4 + 1, 5 * 4 + 1]
    assert meta.query_start_loc.tolist() == [0, 3, 4]
    assert meta.block_tables.tolist() == [[7, 2], [5, 0]]
    assert not meta.is_decode_only and meta.max_seq_len == 6
