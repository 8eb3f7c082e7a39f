"""AttentionMetadata: how one flattened engine step (B sequences, T new tokens) maps onto the paged KV cache."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from ember.attention.backend import AttentionBackend


@dataclass
class AttentionMetadata:
    """Every sequence contributes `query_len` new tokens that follow `seq_len - query_len` tokens already cached.

    Prefill, chunked prefill, prefill after a prefix-cache hit and decode are all the same case, so one
    description serves them all. The KV cache of each layer is `[2, num_blocks, block_size, num_kv_heads, head_dim]`
    (index 0 keys, 1 values); token t of a sequence lives in block `block_tables[seq, t // block_size]` at
    offset `t % block_size`.
    """

    backend: "AttentionBackend"
    kv_caches: list[torch.Tensor]   # one per attention layer, [2, num_blocks, block_size, Hkv, D]
    slot_mapping: torch.Tensor      # [T] int64: flat cache slot (block * block_size + offset) of each new token
    query_start_loc: torch.Tensor   # [B + 1] int32: where each sequence's new tokens start in the flat batch
    seq_lens: torch.Tensor          # [B] int32: cached + new tokens of each sequence after this step
    block_tables: torch.Tensor      # [B, max_blocks] int32: block ids, padded with 0
    query_lens_cpu: list[int]       # host copies, so reference code never syncs with the device
    seq_lens_cpu: list[int]
    block_size: int
    # Upper bound on seq_lens for sizing launch grids. CUDA-graph capture sets it (max_model_len) so a backend's
    # grid / split count is fixed per batch bucket and the replayed kernels read the true lengths on the device.
    seq_len_bound: int | None = None

    @property
    def num_seqs(self) -> int:
        return len(self.seq_lens_cpu)

    @property
    def num_tokens(self) -> int:
        return int(self.slot_mapping.shape[0])

    @property
    def max_query_len(self) -> int:
        return max(self.query_lens_cpu, default=0)

    @property
    def max_seq_len(self) -> int:
        return max(self.seq_lens_cpu, default=0)

    @property
    def is_decode_only(self) -> bool:
        return self.max_query_len == 1


def build_metadata(backend: "AttentionBackend", kv_caches: list[torch.Tensor], block_size: int,
                   query_lens: list[int], seq_lens: list[int], block_tables: list[list[int]],
                   device: torch.device | str) -> AttentionMetadata:
    """Host lists -> device tensors. `block_tables[i]` must cover `seq_lens[i]` tokens."""
    slots: list[int] = []
    for q_len, s_len, table in zip(query_lens, seq_lens, block_tables):
        for pos in range(s_len - q_len, s_len):
            slots.append(table[pos // block_size] * block_size + pos % block_size)
    starts = [0]
    for q_len in query_lens:
        starts.append(starts[-1] + q_len)
    width = max((len(t) for t in block_tables), default=0)
    padded = [t + [0] * (width - len(t)) for t in block_tables]
    pin = torch.device(device).type == "cuda"

    def to_dev(data: list, dtype: torch.dtype) -> torch.Tensor:
        t = torch.tensor(data, dtype=dtype, pin_memory=pin)
        return t.to(device, non_blocking=True)

    return AttentionMetadata(
        backend=backend,
        kv_caches=kv_caches,
        slot_mapping=to_dev(slots, torch.int64),
        query_start_loc=to_dev(starts, torch.int32),
        seq_lens=to_dev(seq_lens, torch.int32),
        block_tables=to_dev(padded, torch.int32).view(len(block_tables), width),
        query_lens_cpu=list(query_lens),
        seq_lens_cpu=list(seq_lens),
        block_size=block_size,
    )
