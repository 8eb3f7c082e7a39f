"""Paged KV block pool: block ids, reference counts and prefix hashes of full blocks, nothing else."""

from __future__ import annotations

import hashlib
from array import array
from collections import OrderedDict, deque


def block_hash(parent: bytes | None, token_ids: list[int]) -> bytes:
    """Chained hash of one full block: equal hashes mean equal token prefixes (128-bit, collisions negligible)."""
    h = hashlib.blake2b(parent or b"", digest_size=16)
    h.update(array("q", token_ids).tobytes())
    return h.digest()


class BlockManager:
    """Free blocks without content are handed out first; freed blocks that still hold a registered prefix wait in
    an LRU and are evicted (oldest first) only when no clean block is left."""

    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True) -> None:
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self.ref_counts = [0] * num_blocks
        self.hash_of: list[bytes | None] = [None] * num_blocks
        self.block_of_hash: dict[bytes, int] = {}
        self.free_clean: deque[int] = deque(range(num_blocks))
        self.free_cached: OrderedDict[int, None] = OrderedDict()   # LRU: first = least recently freed

    @property
    def num_free_blocks(self) -> int:
        return len(self.free_clean) + len(self.free_cached)

    @property
    def num_used_blocks(self) -> int:
        return self.num_blocks - self.num_free_blocks

    def blocks_needed(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    def match_prefix(self, token_ids: list[int]) -> tuple[list[int], list[bytes]]:
        """Cached blocks for the longest hashed prefix of `token_ids`, leaving at least the last token to compute."""
        blocks: list[int] = []
        hashes: list[bytes] = []
        if not self.enable_prefix_caching:
            return blocks, hashes
        parent = None
        for i in range((len(token_ids) - 1) // self.block_size):
            parent = block_hash(parent, token_ids[i * self.block_size:(i + 1) * self.block_size])
            block = self.block_of_hash.get(parent)
            if block is None:
                break
            blocks.append(block)
            hashes.append(parent)
        return blocks, hashes

    def can_take(self, cached_blocks: list[int], num_new: int) -> bool:
        """Whether `cached_blocks` (from match_prefix) can be referenced and `num_new` fresh blocks allocated."""
        revived = sum(1 for b in cached_blocks if self.ref_counts[b] == 0)
        return revived + num_new <= self.num_free_blocks

    def take(self, cached_blocks: list[int]) -> None:
        """Add a reference to each cached block, pulling it out of the free LRU if nobody held it."""
        for b in cached_blocks:
            if self.ref_counts[b] == 0:
                del self.free_cached[b]
            self.ref_counts[b] += 1

    def allocate(self, num: int) -> list[int]:
        """`num` fresh blocks (ref count 1); the caller checks `can_take` first."""
        if num > self.num_free_blocks:
            raise RuntimeError(f"KV cache out of blocks: asked for {num}, {self.num_free_blocks} free")
        out = []
        for _ in range(num):
            if self.free_clean:
                b = self.free_clean.popleft()
            else:
                b, _ = self.free_cached.popitem(last=False)
                del self.block_of_hash[self.hash_of[b]]
                self.hash_of[b] = None
            self.ref_counts[b] = 1
            out.append(b)
        return out

    def free(self, blocks: list[int]) -> None:
        """Drop one reference per block; tail blocks go first so that, among equals, they are evicted first."""
        for b in reversed(blocks):
            self.ref_counts[b] -= 1
            if self.ref_counts[b] < 0:
                raise RuntimeError(f"block {b} freed more often than taken")
            if self.ref_counts[b] == 0:
                if self.hash_of[b] is None:
                    self.free_clean.append(b)
                else:
                    self.free_cached[b] = None

    def register(self, block: int, h: bytes) -> None:
        """Publish a block whose tokens are now computed; a duplicate of an already cached prefix stays private."""
        if self.enable_prefix_caching and h not in self.block_of_hash and self.hash_of[block] is None:
            self.block_of_hash[h] = block
            self.hash_of[block] = h
