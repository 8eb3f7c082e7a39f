"""BlockManager: ref counts, prefix hashes of full blocks, LRU eviction of cached free blocks."""

import pytest

from ember.engine.block_manager import BlockManager, block_hash


def register_prefix(bm: BlockManager, blocks: list[int], tokens: list[int]) -> None:
    parent = None
    for i, b in enumerate(blocks):
        parent = block_hash(parent, tokens[i * bm.block_size:(i + 1) * bm.block_size])
        bm.register(b, parent)


def test_allocate_free_refcount():
    bm = BlockManager(num_blocks=4, block_size=8)
    a = bm.allocate(3)
    assert len(set(a)) == 3 and bm.num_free_blocks == 1
    bm.take([a[0]])                      # a second sequence shares the first block
    assert bm.ref_counts[a[0]] == 2
    bm.free(a)
    assert bm.ref_counts[a[0]] == 1 and bm.num_free_blocks == 3
    bm.free([a[0]])
    assert bm.num_free_blocks == 4 and bm.num_used_blocks == 0
    with pytest.raises(RuntimeError, match="freed more often"):
        bm.free([a[0]])
    with pytest.raises(RuntimeError, match="out of blocks"):
        bm.allocate(5)


def test_prefix_hits_chain_and_keep_last_token():
    bm = BlockManager(num_blocks=8, block_size=4)
    tokens = list(range(12))
    blocks = bm.allocate(3)
    register_prefix(bm, blocks, tokens)
    hit, hashes = bm.match_prefix(tokens + [99])
    assert hit == blocks and len(hashes) == 3
    # exactly 3 full blocks: the last token must be recomputed, so only 2 blocks are reused
    assert bm.match_prefix(tokens)[0] == blocks[:2]
    # a different first block breaks the chain even if later blocks are equal
    assert bm.match_prefix([7] + tokens[1:] + [99])[0] == []
    assert bm.match_prefix(tokens[:4] + [0, 0, 0, 0, 1])[0] == blocks[:1]


def test_freed_cached_blocks_are_reusable_then_evicted_lru():
    bm = BlockManager(num_blocks=4, block_size=4)
    a, b = bm.allocate(1), bm.allocate(1)
    register_prefix(bm, a, [1, 2, 3, 4])
    register_prefix(bm, b, [5, 6, 7, 8])
    bm.free(a)
    bm.free(b)
    # still cached after freeing: a later request takes them back without allocating
    hit, _ = bm.match_prefix([1, 2, 3, 4, 0])
    assert hit == a
    assert bm.can_take(hit, 3) and not bm.can_take(hit, 4)
    # fresh allocations use clean blocks first, then evict the least recently freed cached block (a)
    fresh = bm.allocate(2)
    assert set(fresh).isdisjoint(a + b)
    assert bm.allocate(1) == a
    assert bm.match_prefix([1, 2, 3, 4, 0])[0] == []          # evicted: hash forgotten
    assert bm.match_prefix([5, 6, 7, 8, 0])[0] == b           # b still cached


def test_take_revives_cached_block_and_duplicate_register_is_ignored():
    bm = BlockManager(num_blocks=3, block_size=4)
    a = bm.allocate(1)
    register_prefix(bm, a, [1, 2, 3, 4])
    bm.free(a)
    bm.take(a)
    assert bm.ref_counts[a[0]] == 1 and bm.num_free_blocks == 2
    dup = bm.allocate(1)
    register_prefix(bm, dup, [1, 2, 3, 4])                     # same content computed twice
    assert bm.match_prefix([1, 2, 3, 4, 0])[0] == a
    bm.free(dup)
    assert dup[0] in bm.free_clean                             # the private copy is not cached


def test_prefix_caching_off_never_hits():
    bm = BlockManager(num_blocks=2, block_size=4, enable_prefix_caching=False)
    a = bm.allocate(1)
    register_prefix(bm, a, [1, 2, 3, 4])
    assert bm.match_prefix([1, 2, 3, 4, 5])[0] == []
