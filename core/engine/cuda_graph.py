"""Decode CUDA graphs: model forward + logits captured once per batch-size bucket and replayed over static buffers."""

from __future__ import annotations

import logging
import time

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

    Every input lives in a static device buffer the graphs were captured over: a step copies its host lists in
    (pinned, non-blocking: no host sync), pads the batch to the next bucket with slot -1 (the cache write skips
    it) and seq_len 0 (attention reads nothing), and replays. The attention backend sizes its launch from
    `meta.seq_len_bound = max_model_len`, never from this step's lengths.
    """

    def __init__(self, model: nn.Module, backend: AttentionBackend, kv_caches: list[torch.Tensor], block_size: int,
                 max_batch: int, max_model_len: int, vocab_size: int, device: torch.device) -> None:
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
        hidden = self.model(self.input_ids[:bs], self.positions[:bs], meta)                  # [bs, H]
        self.logits[:bs].copy_(self.model.compute_logits(hidden))                            # [bs, V] fp32

    @torch.inference_mode()
    def capture(self) -> None:
        """Largest bucket first, all sharing one memory pool (only one graph runs at a time)."""
        t0 = time.perf_counter()
        self.slot_mapping.fill_(-1)   # warm-up and capture must not write the KV cache
        self.seq_lens.zero_()
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

    def run(self, input_ids: list[int], positions: list[int], slots: list[int], seq_lens: list[int],
            block_tables: list[list[int]]) -> torch.Tensor:
        """One decode step of B = len(input_ids) sequences -> logits [B, V] (a view of the static buffer,
        valid until the next replay)."""
        b = len(input_ids)
        bs = self.bucket_for(b)
        pad = bs - b
        width = max(len(t) for t in block_tables)
        table = torch.tensor([t + [0] * (width - len(t)) for t in block_tables], dtype=torch.int32,
                             pin_memory=True)                                               # [b, width]
        # One pinned [4, bs] host tensor -> one copy for ids, positions, slots and lengths.
        packed = torch.tensor([input_ids + [0] * pad, positions + [0] * pad, slots + [-1] * pad,
                               seq_lens + [0] * pad], dtype=torch.long, pin_memory=True)
        dev = packed.to(self.device, non_blocking=True)
        self.input_ids[:bs].copy_(dev[0])
        self.positions[:bs].copy_(dev[1])
        self.slot_mapping[:bs].copy_(dev[2])
        self.seq_lens[:bs].copy_(dev[3])
        self.block_tables[:b, :width].copy_(table, non_blocking=True)
        self.graphs[bs].replay()
        return self.logits[:b]
