"""Scheduler: token budget, chunked prefill, seat limit, preemption and resumption, n > 1 gating."""

import itertools

from ember.engine.block_manager import BlockManager
from ember.engine.scheduler import Scheduler
from ember.engine.sequence import Request, Sequence, SequenceStatus
from ember.sampling_params import SamplingParams

_ids = itertools.count()


def make_seq(num_tokens: int, first: int = 0, leader: Sequence | None = None) -> Sequence:
    ids = list(range(first, first + num_tokens))
    req = Request(str(next(_ids)), None, ids, SamplingParams())
    seq = Sequence(next(_ids), req, 0, ids, None, None, leader=leader)
    req.seqs.append(seq)
    return seq


def make_scheduler(num_blocks=64, block_size=8, max_num_seqs=8, max_num_tokens=16, chunked=True, caching=True):
    bm = BlockManager(num_blocks, block_size, caching)
    return Scheduler(bm, max_num_seqs, max_num_tokens, chunked), bm


def run_step(sched: Scheduler, token: int = 7):
    """Schedule, pretend the model ran, append a token to every sequence that reached its end."""
    batch = sched.schedule()
    plan = [(s, n) for s, n in zip(batch.seqs, batch.num_new_tokens)]
    sched.mark_computed(batch)
    for seq, _ in plan:
        if seq.num_computed_tokens == seq.num_tokens:
            seq.token_ids.append(token)
    return plan, batch


def test_budget_and_chunked_prefill_split():
    sched, _ = make_scheduler(max_num_tokens=16)
    a, b, c = make_seq(10), make_seq(10, 100), make_seq(10, 200)
    for s in (a, b, c):
        sched.add(s)
    plan, _ = run_step(sched)
    assert [(s, n) for s, n in plan] == [(a, 10), (b, 6)]     # b's prompt is split, c waits
    assert a.num_output_tokens == 1 and b.num_output_tokens == 0
    plan, _ = run_step(sched)
    # running first: a decodes 1 token, b finishes its prefill (4), then c joins with its whole prompt
    assert plan == [(a, 1), (b, 4), (c, 10)]
    assert sum(n for _, n in plan) <= 16


def test_decode_prefill_mix_respects_budget_every_step():
    sched, _ = make_scheduler(max_num_tokens=12)
    seqs = [make_seq(n, 50 * i) for i, n in enumerate([30, 5, 17, 9])]
    for s in seqs:
        sched.add(s)
    for _ in range(20):
        plan, _ = run_step(sched)
        assert 0 < sum(n for _, n in plan) <= 12
    assert all(s.num_output_tokens > 0 for s in seqs)


def test_no_chunking_waits_instead_of_splitting():
    sched, _ = make_scheduler(max_num_tokens=16, chunked=False)
    a, b = make_seq(10), make_seq(10, 100)
    sched.add(a)
    sched.add(b)
    plan, _ = run_step(sched)
    assert plan == [(a, 10)]
    plan, _ = run_step(sched)
    assert plan == [(a, 1), (b, 10)]


def test_max_num_seqs():
    sched, _ = make_scheduler(max_num_seqs=2, max_num_tokens=100)
    for i in range(4):
        sched.add(make_seq(3, 10 * i))
    plan, _ = run_step(sched)
    assert len(plan) == 2 and len(sched.waiting) == 2


def test_preempt_newest_then_resume_with_generated_tokens():
    # 4 blocks of 4 tokens; two sequences of 7 tokens take 2 blocks each; growing past 8 needs a third block
    sched, bm = make_scheduler(num_blocks=4, block_size=4, max_num_tokens=32, caching=False)
    a, b = make_seq(7), make_seq(7, 100)
    sched.add(a)
    sched.add(b)
    run_step(sched)                                 # both prefill, each gets token 8
    run_step(sched)                                 # both decode position 7 (still 2 blocks), get token 9
    assert bm.num_free_blocks == 0
    plan, _ = run_step(sched)                       # a needs block 3 -> b (newest) is preempted
    assert plan == [(a, 1)]
    assert sched.num_preemptions == 1
    assert b.status is SequenceStatus.WAITING and sched.waiting[0] is b
    assert b.num_computed_tokens == 0 and b.block_table == [] and b.num_tokens == 9   # generated tokens kept
    sched.free(a)                                   # a finishes
    a.status = SequenceStatus.FINISHED
    plan, _ = run_step(sched)
    assert plan == [(b, 9)]                         # recomputes prompt + generated tokens, then continues
    assert b.num_tokens == 10
    sched.free(b)
    assert bm.num_free_blocks == 4


def test_sequence_that_cannot_fit_alone_fails():
    sched, bm = make_scheduler(num_blocks=2, block_size=4, max_num_tokens=32)
    a = make_seq(8)
    sched.add(a)
    run_step(sched)                                 # 8 tokens fill both blocks, token 9 needs a third
    _, batch = run_step(sched)
    assert batch.failed == [a] and not batch.seqs
    assert bm.num_free_blocks == 2 and not sched.has_unfinished()


def test_siblings_wait_for_leader_prefill_then_hit_prefix_cache():
    sched, _ = make_scheduler(block_size=4, max_num_tokens=8)
    leader = make_seq(10)
    sib = make_seq(10, leader=leader)
    sched.add(leader)
    sched.add(sib)
    plan, _ = run_step(sched)
    assert plan == [(leader, 8)]
    plan, _ = run_step(sched)
    assert plan[0] == (leader, 2)
    assert all(s is not sib for s, _ in plan)       # leader still prefilling at schedule time
    plan, _ = run_step(sched)
    assert (sib, 2) in plan                         # 2 full blocks (8 tokens) come from the prefix cache
    assert sched.prefix_hit_tokens == 8


def test_waiting_sequence_that_can_never_fit_fails_instead_of_spinning():
    # without chunking a resumed 20-token sequence needs 3 blocks of 8 in one step, but only 2 exist
    sched, bm = make_scheduler(num_blocks=2, block_size=8, max_num_tokens=32, chunked=False)
    seq = make_seq(20)
    sched.add(seq)
    _, batch = run_step(sched)
    assert batch.failed == [seq] and not sched.has_unfinished() and bm.num_free_blocks == 2
