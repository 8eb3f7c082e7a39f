"""End to end on a tiny random Llama: batching, chunking, prefix reuse and preemption never change greedy output."""

import pytest
import torch

from ember import LLM, KvCacheConfig, SamplingParams

GREEDY = SamplingParams(temperature=0, max_tokens=12, ignore_eos=True)


SCHEDULING = {"async": False}   # what make_llm passes as async_scheduling in the current test


@pytest.fixture(autouse=True, params=[False, True], ids=["sync", "async"])
def async_scheduling(request):
    """Every test runs twice: plain steps, and async scheduling (decode steps launched one step ahead of the
    host, placeholders resolved a step late), which must not change a single output."""
    SCHEDULING["async"] = request.param
    yield request.param
    SCHEDULING["async"] = False


def make_prompts(tokenizer) -> list[list[int]]:
    g = torch.Generator().manual_seed(0)
    return [torch.randint(0, 250, (n,), generator=g).tolist() for n in (3, 41, 9, 70, 17, 1, 33)]


def hf_greedy(hf_model, ids: list[int], max_new: int) -> list[int]:
    out = hf_model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=max_new, min_new_tokens=max_new,
                            attention_mask=torch.ones(1, len(ids), dtype=torch.long))
    return out[0, len(ids):].tolist()


def make_llm(tiny_dir, **kw) -> LLM:
    kw.setdefault("kv_cache", KvCacheConfig(block_size=8, num_blocks=128))
    kw.setdefault("async_scheduling", SCHEDULING["async"])
    kw.setdefault("max_num_tokens", 256)
    return LLM(str(tiny_dir), device="cpu", **kw)


@pytest.fixture(scope="module")
def reference(tiny_dir, tokenizer, hf_model):
    """Each prompt alone, greedy, through HF transformers."""
    return [hf_greedy(hf_model, p, GREEDY.max_tokens) for p in make_prompts(tokenizer)]


def token_ids(outputs) -> list[list[int]]:
    return [o.outputs[0].token_ids for o in outputs]


def test_alone_matches_hf(tiny_dir, tokenizer, reference):
    llm = make_llm(tiny_dir)
    alone = [token_ids(llm.generate([p], GREEDY))[0] for p in make_prompts(tokenizer)]
    assert alone == reference


@pytest.mark.parametrize("max_num_tokens,chunked", [(256, True), (16, True), (80, False)])
def test_mixed_batch_matches_alone(tiny_dir, tokenizer, reference, max_num_tokens, chunked):
    llm = make_llm(tiny_dir, max_num_tokens=max_num_tokens, enable_chunked_prefill=chunked)
    outs = llm.generate(make_prompts(tokenizer), GREEDY)
    assert token_ids(outs) == reference
    assert all(o.finished and o.outputs[0].finish_reason == "length" for o in outs)
    assert llm.stats().num_blocks_used == 0                          # no leak


def test_prefix_reuse_hits_and_keeps_outputs(tiny_dir, hf_model):
    prefix = list(range(10, 60))                                     # 50 shared tokens = 6 full blocks of 8
    prompts = [prefix + [200 + i, 201 + i] for i in range(4)]
    ref = [hf_greedy(hf_model, p, GREEDY.max_tokens) for p in prompts]
    llm = make_llm(tiny_dir)
    first = llm.generate(prompts[:1], GREEDY)
    rest = llm.generate(prompts[1:], GREEDY)
    stats = llm.stats()
    assert stats.prefix_cache_hit_rate > 0.5 and stats.prefix_cache_hit_tokens == 3 * 48
    assert token_ids(first + rest) == ref
    off = make_llm(tiny_dir, kv_cache=KvCacheConfig(block_size=8, num_blocks=128, enable_prefix_caching=False))
    assert token_ids(off.generate(prompts, GREEDY)) == ref and off.stats().prefix_cache_hit_tokens == 0


def test_preemption_under_small_kv_budget_keeps_outputs(tiny_dir, tokenizer, reference):
    # 16 blocks of 8 = 128 tokens for 7 requests that need up to 82 tokens each: must preempt
    llm = make_llm(tiny_dir, kv_cache=KvCacheConfig(block_size=8, num_blocks=16), max_num_tokens=64)
    outs = llm.generate(make_prompts(tokenizer), GREEDY)
    stats = llm.stats()
    assert stats.num_preemptions > 0
    assert token_ids(outs) == reference
    assert stats.num_blocks_used == 0 and stats.num_blocks_free == 16


def test_n_samples_share_prompt_blocks(tiny_dir, hf_model):
    prompt = list(range(30, 70))                                     # 40 tokens: 4 full blocks reusable
    llm = make_llm(tiny_dir)
    [out] = llm.generate([prompt], SamplingParams(n=3, temperature=0, max_tokens=8, ignore_eos=True))
    ref = hf_greedy(hf_model, prompt, 8)
    assert [c.token_ids for c in out.outputs] == [ref] * 3 and [c.index for c in out.outputs] == [0, 1, 2]
    assert llm.stats().prefix_cache_hit_tokens == 2 * 32             # both siblings reuse the leader's blocks
    seeded = SamplingParams(n=2, temperature=1.0, seed=7, max_tokens=8, ignore_eos=True)
    a = llm.generate([prompt], seeded)[0]
    b = llm.generate([prompt, [1, 2, 3]], [seeded, SamplingParams(temperature=1.0)])[0]
    assert [c.token_ids for c in a.outputs] == [c.token_ids for c in b.outputs]
    assert a.outputs[0].token_ids != a.outputs[1].token_ids


def test_too_long_prompt_fails_alone(tiny_dir, tokenizer, reference):
    llm = make_llm(tiny_dir, max_model_len=64)
    prompts = make_prompts(tokenizer)
    outs = llm.generate(prompts, GREEDY)
    for out, p, ref in zip(outs, prompts, reference):
        if len(p) > 64:
            assert out.outputs[0].finish_reason == "error" and out.outputs[0].token_ids == []
            assert f"{len(p)} tokens" in out.error and "max_model_len is 64" in out.error
        else:
            assert out.error is None and out.outputs[0].token_ids == ref
    [near] = llm.generate([prompts[3][:60]], GREEDY)                 # stops at max_model_len
    assert near.outputs[0].finish_reason == "length" and len(near.outputs[0].token_ids) == 4


def test_requests_that_can_never_fit_fail_with_reason(tiny_dir):
    llm = make_llm(tiny_dir, kv_cache=KvCacheConfig(block_size=8, num_blocks=4))
    short, long_ = llm.generate([[1, 2, 3], list(range(40))], SamplingParams(max_tokens=40, ignore_eos=True))
    assert "needs 5 KV blocks but the cache has only 4" in long_.error
    # the short one grows past 32 tokens while alone: it ends with an error, keeping what it produced
    assert short.outputs[0].finish_reason == "error" and len(short.outputs[0].token_ids) == 30
    assert "no longer fits" in short.error
    nochunk = make_llm(tiny_dir, max_num_tokens=16, enable_chunked_prefill=False)
    [out] = nochunk.generate([list(range(20))], GREEDY)
    assert out.outputs[0].finish_reason == "error" and "chunked prefill is off" in out.error


def test_stop_conditions(tiny_dir, tokenizer):
    llm = make_llm(tiny_dir)
    prompt = "the weather in paris is"
    base = llm.generate(prompt, SamplingParams(temperature=0, max_tokens=30, ignore_eos=True))[0].outputs[0]
    # stop string: pick a stretch of the greedy text; output must be cut right before it
    stop = base.text[10:13]
    cut = base.text.find(stop)
    got = llm.generate(prompt, SamplingParams(temperature=0, max_tokens=30, ignore_eos=True, stop=[stop]))[0]
    assert got.outputs[0].text == base.text[:cut] and got.outputs[0].stop_reason == stop
    assert got.outputs[0].finish_reason == "stop"
    inc = llm.generate(prompt, SamplingParams(temperature=0, max_tokens=30, ignore_eos=True, stop=stop,
                                              include_stop_str_in_output=True))[0].outputs[0]
    assert inc.text == base.text[:cut + len(stop)]
    # stop token ids: the 3rd greedy token ends generation there; min_tokens pushes past it
    tok = base.token_ids[2]
    first = base.token_ids.index(tok)
    st = llm.generate(prompt, SamplingParams(temperature=0, max_tokens=30, stop_token_ids=[tok]))[0].outputs[0]
    assert st.token_ids == base.token_ids[:first + 1] and st.stop_reason == tok and st.finish_reason == "stop"
    # eos (from the checkpoint) ends a sequence unless ignore_eos; pretend the 3rd greedy token is eos
    assert llm.engine.eos_token_ids == [tokenizer.eos_token_id]
    llm.engine.eos_token_ids = [tok]
    eos = llm.generate(prompt, SamplingParams(temperature=0, max_tokens=30))[0].outputs[0]
    assert eos.token_ids == base.token_ids[:first + 1] and eos.stop_reason is None and eos.finish_reason == "stop"
    ign = llm.generate(prompt, SamplingParams(temperature=0, max_tokens=30, ignore_eos=True))[0].outputs[0]
    assert ign.token_ids == base.token_ids
    mint = llm.generate(prompt, SamplingParams(temperature=0, max_tokens=30, min_tokens=first + 2))[0].outputs[0]
    assert len(mint.token_ids) >= first + 2 and tok not in mint.token_ids[:first + 2]


def test_streaming_matches_non_streaming(tiny_dir):
    import asyncio

    llm = make_llm(tiny_dir)
    params = SamplingParams(temperature=0, max_tokens=20, ignore_eos=True, stop=["zz"])
    [full] = llm.generate("hello stream", params)
    chunks = list(llm.generate_stream("hello stream", params))
    assert chunks[-1].finished and not any(c.finished for c in chunks[:-1])
    assert "".join(c.outputs[0].delta_text for c in chunks) == full.outputs[0].text == chunks[-1].outputs[0].text
    assert sum((c.outputs[0].delta_token_ids for c in chunks), []) == full.outputs[0].token_ids
    assert len(chunks) > 5

    async def collect():
        return [o async for o in llm.generate_async("hello stream", params)]

    achunks = asyncio.run(collect())
    assert "".join(c.outputs[0].delta_text for c in achunks) == full.outputs[0].text

    async def two_at_once():   # concurrent streams share engine steps; each gets only its own outputs
        async def one(prompt):
            return [o async for o in llm.generate_async(prompt, params)]
        return await asyncio.gather(one("hello stream"), one([9, 8, 7, 6]))

    mine, other = asyncio.run(two_at_once())
    assert {c.request_id for c in mine}.isdisjoint({c.request_id for c in other})
    assert mine[-1].outputs[0].text == full.outputs[0].text
    assert other[-1].outputs[0].token_ids == llm.generate([[9, 8, 7, 6]], params)[0].outputs[0].token_ids


def test_abandoned_stream_is_aborted(tiny_dir):
    llm = make_llm(tiny_dir)
    stream = llm.generate_stream([5, 6, 7], SamplingParams(max_tokens=50, ignore_eos=True))
    next(stream)
    stream.close()
    assert not llm.engine.has_unfinished() and llm.stats().num_blocks_used == 0


def test_logprobs_returned(tiny_dir):
    llm = make_llm(tiny_dir)
    [out] = llm.generate([[1, 2, 3]], SamplingParams(temperature=0, max_tokens=4, logprobs=2, ignore_eos=True))
    c = out.outputs[0]
    assert len(c.logprobs) == 4
    for tok, lp in zip(c.token_ids, c.logprobs):
        assert tok in lp and lp[tok] == max(lp.values()) and len(lp) == 2   # greedy token is the top one
