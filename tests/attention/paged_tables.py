"""Test helper: block tables for a batch, scattered over a shuffled paged cache (so kernels must follow the table)."""

from __future__ import annotations

import math

import torch


def shuffled_tables(seq_lens: list[int], block_size: int, gen: torch.Generator) -> tuple[list[list[int]], int]:
    """(one block table per sequence, the cache's block count: all tables plus 3 spare blocks)."""
    per_seq = [math.ceil(s / block_size) for s in seq_lens]
    num_blocks = sum(per_seq) + 3
    order = torch.randperm(num_blocks, generator=gen).tolist()
    tables, used = [], 0
    for n in per_seq:
        tables.append(order[used:used + n])
        used += n
    return tables, num_blocks
