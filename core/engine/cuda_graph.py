"""Decode CUDA graphs: model forward + logits captured once per batch-size bucket and replayed over static buffers."""

from __future__ import annotations

import logging
import time

import numpy as np
import torch
from torch import nn

from ember.attention.backend import AttentionBackend
from ember.attention.metadata import AttentionMetadata

logger = logging.getLogger("ember.engine")


def graph_buckets(max_batch: int) -> list[int]:
    """1, 2, 4, 8, then every 16 (as vLLM): padding a decode batch costs at most 15 rows of a memory-bound step."""
    sizes = [b for b in (1, 2, 4, 8) if b <= max_batch] + list(range(16, max_batch + 1, 16))
    if sizes[-1] != max_batch:
        sizes.append(max_batch)
    return sizes


class DecodeGraphs:
    """Replays `compute_logits(model(input_ids, positions, meta))` for decode-only steps of up to `max_batch` rows.

    Every input lives in a static device buffer the graphs were captured over. A step fills preallocated pinned
    host buffers with numpy (ids / positions / slots / lengths / sources in one [5, B] int64 array, block tables
    in a [B, max_blocks] int32 array whose rows are only rewritten where a sequence's table changed), pads the
    batch to the next bucket with slot -1 (the cache write skips it) and seq_len 0 (attention reads nothing),
    issues two non-blocking copies and replays; the graph itself scatters the [5, B] staging buffer into the
    model's inputs. The attention backend sizes its launch from `meta.seq_len_bound = max_model_len`, never this
    step's lengths.

    Async scheduling: a row whose source is >= 0 takes its input id from `last_sampled[source]` on the device
    (the token the previous step sampled, not yet on the host). Two sets of host buffers alternate, so a step can
    be prepared while the previous step's copies may still be pending; the caller syncs at least every other step.
    """

    def __init__(self, model: nn.Module, backend: AttentionBackend, kv_caches: list[torch.Tensor], block_size: int,
                 max_batch: int, max_model_len: int, vocab_size: int, device: torch.device,
                 last_sampled: torch.Tensor) -> None:
        self.model = model
        self.backend = backend
        self.kv_caches = kv_caches
        self.block_size = block_size
        self.max_model_len = max_model_len
        self.device = device
        self.buckets = graph_buckets(max_batch)
        n, width = self.buckets[-1], -(-max_model_len // block_size)
        self.input_ids = torch.zeros(n, dtype=torch.long, device=device)                 # [B]
        self.positions = torch.zeros(n, dtype=torch.long, device=device)                 # [B]
        self.slot_mapping = torch.full((n,), -1, dtype=torch.long, device=device)        # [B]
        self.seq_lens = torch.zeros(n, dtype=torch.int32, device=device)                 # [B]
        self.block_tables = torch.zeros(n, width, dtype=torch.int32, device=device)      # [B, max_blocks]
        self.query_start_loc = torch.arange(n + 1, dtype=torch.int32, device=device)     # decode: one token each
        self.logits = torch.zeros(n, vocab_size, dtype=torch.float32, device=device)     # [B, V]
        self.last_sampled = last_sampled                                                 # [>= B] int64
        self.staging = torch.zeros(5, n, dtype=torch.long, device=device)     # ids, pos, slots, lens, sources
        self.host = [_HostBuffers(n, width, device.type == "cuda") for _ in range(2)]
        self._flip = 0
        self._rows = np.arange(n)
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.pool = None

    def bucket_for(self, batch_size: int) -> int | None:
        return next((b for b in self.buckets if b >= batch_size), None)

    def _meta(self, bs: int) -> AttentionMetadata:
        return AttentionMetadata(
            backend=self.backend, kv_caches=self.kv_caches, slot_mapping=self.slot_mapping[:bs],
            query_start_loc=self.query_start_loc[:bs + 1], seq_lens=self.seq_lens[:bs],
            block_tables=self.block_tables[:bs], query_lens_cpu=[1] * bs, seq_lens_cpu=[self.max_model_len] * bs,
            block_size=self.block_size, seq_len_bound=self.max_model_len)

    def _forward(self, bs: int, meta: AttentionMetadata) -> None:
        # Captured too: one H2D copy per step lands in `staging`; these scatter it (int64 -> int32 lengths).
        src = self.staging[4, :bs]
        self.input_ids[:bs].copy_(torch.where(src >= 0, self.last_sampled[src.clamp(min=0)], self.staging[0, :bs]))
        self.positions[:bs].copy_(self.staging[1, :bs])
        self.slot_mapping[:bs].copy_(self.staging[2, :bs])
        self.seq_lens[:bs].copy_(self.staging[3, :bs])
        hidden = self.model(self.input_ids[:bs], self.positions[:bs], meta)                  # [bs, H]
        self.logits[:bs].copy_(self.model.compute_logits(hidden))                            # [bs, V] fp32

    @torch.inference_mode()
    def capture(self) -> None:
        """Largest bucket first, all sharing one memory pool (only one graph runs at a time)."""
        t0 = time.perf_counter()
        self.staging.zero_()
        self.staging[2].fill_(-1)     # warm-up and capture must not write the KV cache (slot -1, length 0)
        self.staging[4].fill_(-1)
        for bs in reversed(self.buckets):
            meta = self._meta(bs)
            self._forward(bs, meta)   # warm-up: compiles the Triton kernels, settles cuBLAS workspaces
            torch.cuda.synchronize(self.device)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self.pool):
                self._forward(bs, meta)
            self.pool = graph.pool() if self.pool is None else self.pool
            self.graphs[bs] = graph
        torch.cuda.synchronize(self.device)
        logger.info("captured %d decode CUDA graphs (batch %s) in %.1f s", len(self.graphs),
                    ",".join(map(str, self.buckets)), time.perf_counter() - t0)

    def run(self, seqs: list, sources: list[int] | None = None) -> torch.Tensor:
        """One decode step of the B = len(seqs) sequences (each computes its last token, at position
        `num_computed_tokens`) -> logits [B, V] (a view of the static buffer, valid until the next replay).
        `sources[i] >= 0`: row i's input id is `last_sampled[sources[i]]` (async scheduling)."""
        b = len(seqs)
        bs = self.bucket_for(b)
        bsz = self.block_size
        host = self.host[self._flip]
        self._flip ^= 1
        tables, row_list, row_len = host.tables_np, host.row_list, host.row_len
        for i, seq in enumerate(seqs):
            t = seq.block_table
            n = len(t)
            if row_list[i] is t:          # same list (tables only grow in place): write the new tail, if any
                k = row_len[i]
                if k != n:
                    tables[i, k:n] = t[k:n]
                    row_len[i] = n
            else:
                tables[i, :n] = t
                row_list[i] = t
                row_len[i] = n
        inputs = host.inputs_np
        pos = np.fromiter((s.num_computed_tokens for s in seqs), dtype=np.int64, count=b)
        inputs[0, :b] = [s.token_ids[-1] for s in seqs]
        inputs[1, :b] = pos
        inputs[2, :b] = tables[self._rows[:b], pos // bsz] * bsz + pos % bsz
        inputs[3, :b] = pos + 1
        inputs[4, :b] = -1 if sources is None else sources
        if bs > b:
            inputs[0:2, b:bs] = 0
            inputs[2, b:bs] = -1
            inputs[3, b:bs] = 0
            inputs[4, b:bs] = -1
        self.staging.copy_(host.inputs, non_blocking=True)
        self.block_tables[:bs].copy_(host.tables[:bs], non_blocking=True)
        self.graphs[bs].replay()
        return self.logits[:b]


class _HostBuffers:
    """Pinned staging for one step: inputs [5, B] int64, block tables [B, max_blocks] int32 mirrored row by row."""

    def __init__(self, n: int, width: int, pin: bool) -> None:
        self.inputs = torch.zeros(5, n, dtype=torch.long, pin_memory=pin)
        self.tables = torch.zeros(n, width, dtype=torch.int32, pin_memory=pin)
        self.inputs_np = self.inputs.numpy()
        self.tables_np = self.tables.numpy()
        self.row_list: list[list[int] | None] = [None] * n   # which block-table list each host row mirrors
        self.row_len = [0] * n                                # and how much of it is written
