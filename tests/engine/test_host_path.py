"""The lean host path: graph input preparation (checked on the CPU with no-op graphs), detokenize=False,
stream=False outputs, the greedy sampling fast path."""

from __future__ import annotations

import pytest
import torch

from ember.config import EngineConfig, KvCacheConfig
from ember.engine.cuda_graph import DecodeGraphs
from ember.engine.llm_engine import LLMEngine
from ember.sampling_params import SamplingParams


class _Noop:
    def replay(self) -> None:
        pass


def _engine(tiny_dir, tokenizer, num_blocks=64, max_num_seqs=8) -> LLMEngine:
    from ember.loader.build import load_model

    model = load_model(tiny_dir, torch.float32, "cpu")
    cfg = EngineConfig(max_num_seqs=max_num_seqs, max_num_tokens=256, attention_backend="torch",
                       kv_cache=KvCacheConfig(num_blocks=num_blocks, block_size=8))
    return LLMEngine(model, tokenizer, cfg, torch.device("cpu"), torch.float32, 256, [tokenizer.eos_token_id])


def _run(engine, prompts, params, **kw) -> dict[str, list]:
    ids = [engine.add_request(p, params, **kw) for p in prompts]
    outs: dict[str, list] = {i: [] for i in ids}
    while engine.has_unfinished():
        for o in engine.step():
            outs[o.request_id].append(o)
    return {i: outs[i] for i in ids}


@pytest.mark.parametrize("async_scheduling", [False, True])
def test_decode_inputs_follow_block_tables(tiny_dir, tokenizer, async_scheduling):
    """Every decode step's packed inputs (ids, positions, slots, lengths, sources) and block-table rows equal what
    the sequences hold, across new blocks, finished rows shifting, and a table replaced by preemption. Async: a
    sequence whose last token is still on the device reads it from its row of the previous step."""
    from ember.engine.sequence import PLACEHOLDER

    engine = _engine(tiny_dir, tokenizer, num_blocks=8)
    engine.async_scheduling = async_scheduling
    runner = engine.runner
    g = DecodeGraphs(runner.model, runner.backend, runner.kv_caches, 8, 8, 256, engine.vocab_size,
                     torch.device("cpu"), runner.last_sampled)
    g.graphs = {b: _Noop() for b in g.buckets}
    checked, sourced = [0], [0]
    real_run = g.run

    def checking_run(seqs, sources=None):
        out = real_run(seqs, sources)
        b, bs = len(seqs), g.bucket_for(len(seqs))
        st, tab = g.staging, g.block_tables
        for i, s in enumerate(seqs):
            p = s.num_computed_tokens
            pending = s.token_ids[-1] == PLACEHOLDER
            assert st[4, i] == (s.pending_row if pending else -1)
            assert st[0, i] == s.token_ids[-1] and st[1, i] == p and st[3, i] == p + 1
            assert st[2, i] == s.block_table[p // 8] * 8 + p % 8
            assert tab[i, :len(s.block_table)].tolist() == s.block_table
        assert (st[2, b:bs] == -1).all() and (st[3, b:bs] == 0).all() and (st[4, b:bs] == -1).all()
        checked[0] += 1
        sourced[0] += sum(1 for s in seqs if s.token_ids[-1] == PLACEHOLDER)
        return out

    g.run = checking_run
    runner.graphs = g
    prompts = [[5 + i] * (3 + 4 * i) for i in range(5)]
    lens = [20, 9, 14, 30, 5]
    ids = [engine.add_request(p, SamplingParams(temperature=0, max_tokens=n, ignore_eos=True))
           for p, n in zip(prompts, lens)]
    done = {}
    while engine.has_unfinished():
        for o in engine.step():
            if o.finished:
                done[o.request_id] = len(o.outputs[0].token_ids)
    assert [done[i] for i in ids] == lens
    assert checked[0] > 10 and engine.scheduler.num_preemptions > 0   # 8 blocks of 8 tokens: someone was preempted
    assert (sourced[0] > 10) == async_scheduling


def test_detokenize_false_same_tokens_no_text(tiny_dir, tokenizer):
    engine = _engine(tiny_dir, tokenizer)
    prompts = [tokenizer.encode("the weather"), tokenizer.encode("in paris is")]
    on = _run(engine, prompts, SamplingParams(temperature=0, max_tokens=12))
    off = _run(engine, prompts, SamplingParams(temperature=0, max_tokens=12, detokenize=False))
    for a, b in zip(on.values(), off.values()):
        assert a[-1].outputs[0].token_ids == b[-1].outputs[0].token_ids
        assert a[-1].outputs[0].text and b[-1].outputs[0].text == ""
        assert a[-1].outputs[0].finish_reason == b[-1].outputs[0].finish_reason
    assert all(s.detokenizer is None for r in engine.requests.values() for s in r.seqs)
    with pytest.raises(ValueError, match="detokenize=False"):
        SamplingParams(stop=["x"], detokenize=False)


def test_stream_false_reports_once_with_everything(tiny_dir, tokenizer):
    engine = _engine(tiny_dir, tokenizer)
    prompts = [tokenizer.encode("the weather"), tokenizer.encode("in paris is the")]
    params = SamplingParams(temperature=0.8, max_tokens=10, n=2, seed=1)   # seeded: both runs draw the same
    streamed = _run(engine, prompts, params)
    final = _run(engine, prompts, params, stream=False)
    for s, f in zip(streamed.values(), final.values()):
        assert len(s) > 1 and len(f) == 1 and f[0].finished
        for a, b in zip(s[-1].outputs, f[0].outputs):
            assert a.token_ids == b.token_ids and a.text == b.text
            assert b.delta_token_ids == b.token_ids       # nothing was reported before
    assert not engine.requests


def test_greedy_fast_path_only_for_plain_greedy(tiny_dir, tokenizer):
    from ember.engine.sampler import SamplingBatch

    engine = _engine(tiny_dir, tokenizer)
    plain = SamplingParams(temperature=0, max_tokens=4)
    for params, fast in ((plain, True), (SamplingParams(temperature=0, max_tokens=4, min_tokens=2), False),
                         (SamplingParams(temperature=0, max_tokens=4, logprobs=1), False),
                         (SamplingParams(temperature=0, max_tokens=4, repetition_penalty=1.2), False),
                         (SamplingParams(temperature=0.5, max_tokens=4), False)):
        rid = engine.add_request([5, 6, 7], params)
        seq = engine.requests[rid].seqs[0]
        batch = SamplingBatch.build([seq], [0], engine.vocab_size, engine.device)
        assert (batch.temperature is None) == fast and batch.all_greedy == params.greedy
        engine.abort_request(rid)
