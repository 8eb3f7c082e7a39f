"""Unified in-flight scheduler: one token budget per step shared by decodes, prefill chunks and new arrivals."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from ember.engine.block_manager import BlockManager, block_hash
from ember.engine.sequence import Sequence, SequenceStatus


@dataclass
class ScheduledBatch:
    """The sequences of one step and how many new tokens each computes (prefill chunk or 1 decode token)."""

    seqs: list[Sequence] = field(default_factory=list)
    num_new_tokens: list[int] = field(default_factory=list)
    failed: list[Sequence] = field(default_factory=list)   # could not fit in the KV cache even alone

    def __len__(self) -> int:
        return len(self.seqs)


class Scheduler:
    """vLLM-v1 style: running sequences first (oldest first), then waiting ones while budget, seats and blocks
    last. When blocks run out the newest running sequence is preempted (recompute: its blocks are freed, its
    generated tokens kept) and requeued at the front of the waiting queue."""

    def __init__(self, block_manager: BlockManager, max_num_seqs: int, max_num_tokens: int,
                 enable_chunked_prefill: bool) -> None:
        self.bm = block_manager
        self.max_num_seqs = max_num_seqs
        self.max_num_tokens = max_num_tokens
        self.enable_chunked_prefill = enable_chunked_prefill
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.num_preemptions = 0
        self.prefix_query_tokens = 0
        self.prefix_hit_tokens = 0

    def add(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running)

    def _may_split(self, remaining: int) -> bool:
        # Without chunked prefill a prefill runs whole; a resumed (preempted) sequence longer than a step is split.
        return self.enable_chunked_prefill or remaining > self.max_num_tokens

    def schedule(self) -> ScheduledBatch:
        batch = ScheduledBatch()
        seqs, counts = batch.seqs, batch.num_new_tokens
        budget = self.max_num_tokens
        preempted = False
        bm = self.bm
        bsz = bm.block_size
        running = self.running
        i = 0
        while i < len(running) and budget > 0:
            seq = running[i]
            computed = seq.num_computed_tokens
            remaining = len(seq.token_ids) - computed
            if remaining > budget and not self._may_split(remaining):
                i += 1
                continue
            n = remaining if remaining < budget else budget
            need = -(-(computed + n) // bsz) - len(seq.block_table)
            if need > 0:     # the all-decode common case rarely gets here: a new block every block_size steps
                while need > bm.num_free_blocks and running[-1] is not seq:
                    self._preempt(running.pop())
                    preempted = True
                if need > bm.num_free_blocks:
                    running.pop()
                    if i == 0:      # alone and still too big: it can never fit
                        self.free(seq)
                        batch.failed.append(seq)
                    else:
                        self._preempt(seq)
                        preempted = True
                    break
                seq.block_table += bm.allocate(need)
            seqs.append(seq)
            counts.append(n)
            budget -= n
            i += 1
        if not preempted and self.waiting:   # a step that had to preempt admits nobody new
            self._admit(batch, budget)
        if not batch and not batch.failed and not self.running:
            self._fail_unfittable_head(batch)
        return batch

    def _fail_unfittable_head(self, batch: ScheduledBatch) -> None:
        """Nothing runs, so every block and the whole budget were on offer: the first admissible waiting
        sequence can never fit. Fail it rather than spin on empty steps."""
        head = next((s for s in self.waiting if not s.waits_for_leader), None)
        if head is not None:
            self.free(head)
            batch.failed.append(head)

    def _admit(self, batch: ScheduledBatch, budget: int) -> None:
        idx = 0
        while idx < len(self.waiting) and budget > 0 and len(self.running) < self.max_num_seqs:
            seq = self.waiting[idx]
            if seq.waits_for_leader:
                idx += 1
                continue
            cached, hashes = self.bm.match_prefix(seq.token_ids)
            num_cached = len(cached) * self.bm.block_size
            remaining = seq.num_tokens - num_cached
            if remaining > budget and not self._may_split(remaining):
                break
            n = min(remaining, budget)
            need = self.bm.blocks_needed(num_cached + n) - len(cached)
            if not self.bm.can_take(cached, need):
                break
            self.bm.take(cached)
            seq.block_table = cached + self.bm.allocate(need)
            seq.block_hashes = hashes
            seq.num_computed_tokens = num_cached
            seq.status = SequenceStatus.RUNNING
            self.prefix_query_tokens += seq.num_tokens
            self.prefix_hit_tokens += num_cached
            del self.waiting[idx]
            self.running.append(seq)
            batch.seqs.append(seq)
            batch.num_new_tokens.append(n)
            budget -= n

    def _preempt(self, seq: Sequence) -> None:
        self.bm.free(seq.block_table)
        seq.block_table = []
        seq.block_hashes = []
        seq.num_computed_tokens = 0
        seq.status = SequenceStatus.WAITING
        self.waiting.appendleft(seq)
        self.num_preemptions += 1

    def mark_computed(self, batch: ScheduledBatch) -> None:
        """After the forward pass: advance computed counts and publish newly full blocks to the prefix cache."""
        bs = self.bm.block_size
        for seq, n in zip(batch.seqs, batch.num_new_tokens):
            seq.num_computed_tokens += n
            if not self.bm.enable_prefix_caching:
                continue
            for j in range(len(seq.block_hashes), seq.num_computed_tokens // bs):
                parent = seq.block_hashes[-1] if seq.block_hashes else None
                h = block_hash(parent, seq.token_ids[j * bs:(j + 1) * bs])
                self.bm.register(seq.block_table[j], h)
                seq.block_hashes.append(h)

    def free_finished(self, seqs: list[Sequence]) -> None:
        """Release the blocks of running sequences that just finished, in order; one pass over `running`."""
        self.running = [s for s in self.running if s.status is not SequenceStatus.FINISHED]
        for seq in seqs:
            if not seq.block_table and seq in self.waiting:   # async scheduling: preempted, then its token finished it
                self.waiting.remove(seq)
            self.bm.free(seq.block_table)
            seq.block_table = []

    def free(self, seq: Sequence) -> None:
        """Take a finished or aborted sequence out of the queues and release its blocks."""
        if seq in self.running:
            self.running.remove(seq)
        elif seq in self.waiting:
            self.waiting.remove(seq)
        self.bm.free(seq.block_table)
        seq.block_table = []
