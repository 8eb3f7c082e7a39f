"""The LLM API on the shared tiny Llama checkpoint: input forms, ordering, chat, errors, stats."""

import pytest
import torch

import ember
from ember import LLM, CompletionOutput, KvCacheConfig, RequestOutput, SamplingParams

GREEDY = SamplingParams(temperature=0, max_tokens=6, ignore_eos=True)


@pytest.fixture(scope="module")
def llm(tiny_llama_dir):
    return LLM(str(tiny_llama_dir), device="cpu", max_num_tokens=128,
               kv_cache=KvCacheConfig(block_size=16, num_blocks=64))


def test_exports():
    assert set(ember.__all__) >= {"LLM", "SamplingParams", "KvCacheConfig", "RequestOutput", "CompletionOutput"}
    with pytest.raises(AttributeError):
        ember.NotAThing


def test_prompt_forms_and_order(llm):
    texts = ["w5 w6 w7", "w9", "w3 w4 w5 w6 w7 w8 w9 w8"]   # (the shared tokenizer splits "w10" oddly)
    outs = llm.generate(texts, GREEDY)
    assert [o.prompt for o in outs] == texts
    assert all(isinstance(o, RequestOutput) and isinstance(o.outputs[0], CompletionOutput) for o in outs)
    assert [o.prompt_token_ids for o in outs] == [[5, 6, 7], [9], [3, 4, 5, 6, 7, 8, 9, 8]]
    by_ids = llm.generate([o.prompt_token_ids for o in outs], GREEDY)
    assert [o.outputs[0].token_ids for o in by_ids] == [o.outputs[0].token_ids for o in outs]
    single = llm.generate(texts[1], GREEDY)
    assert len(single) == 1 and single[0].outputs[0].token_ids == outs[1].outputs[0].token_ids
    assert llm.generate([9], GREEDY)[0].outputs[0].token_ids == outs[1].outputs[0].token_ids
    # text is the output decoded in the context of the prompt (so a joining space is kept)
    dec = llm.tokenizer.decode
    whole, prompt = dec(outs[0].prompt_token_ids + outs[0].outputs[0].token_ids), dec(outs[0].prompt_token_ids)
    assert outs[0].outputs[0].text == whole[len(prompt):] != ""


def test_per_prompt_params(llm):
    outs = llm.generate(["w5", "w6"], [SamplingParams(max_tokens=2, ignore_eos=True),
                                       SamplingParams(max_tokens=5, ignore_eos=True)])
    assert [len(o.outputs[0].token_ids) for o in outs] == [2, 5]
    with pytest.raises(ValueError, match="2 sampling_params for 3 prompts"):
        llm.generate(["w5", "w6", "w7"], [GREEDY, GREEDY])


def test_empty_prompt_rejected_and_nothing_queued(llm):
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        llm.generate(["w5", ""], GREEDY)
    with pytest.raises(ValueError, match="empty"):
        llm.generate([[]], GREEDY)
    with pytest.raises(ValueError, match=r"\[0, 320\)"):
        llm.generate([[5], [320]], GREEDY)
    assert not llm.engine.has_unfinished()


def test_chat_applies_template(llm):
    template = "{% for m in messages %}w1 {{ m['content'] }} {% endfor %}{% if add_generation_prompt %}w3{% endif %}"
    conv = [{"role": "user", "content": "w7 w8"}]
    [out] = llm.chat(conv, GREEDY, chat_template=template)
    assert out.prompt_token_ids == [1, 7, 8, 3]
    assert len(llm.chat([conv, conv], GREEDY, chat_template=template)) == 2
    with pytest.raises(ValueError, match="no chat template"):
        llm.chat(conv, GREEDY)


def test_stats_report_blocks_and_hits(llm):
    prompt = list(range(20, 60))                                   # 40 tokens: 2 full blocks of 16
    llm.generate(prompt, GREEDY)
    before = llm.stats().prefix_cache_hit_tokens
    llm.generate(prompt, GREEDY)
    stats = llm.stats()
    assert stats.prefix_cache_hit_tokens - before == 32
    assert 0 < stats.prefix_cache_hit_rate < 1
    assert stats.num_blocks == 64 and stats.num_blocks_used == 0 and stats.num_blocks_free == 64


def test_bad_words_by_string(llm):
    [base] = llm.generate("w5 w6", GREEDY)
    first = base.outputs[0].token_ids[0]
    word = llm.tokenizer.decode([first])
    [out] = llm.generate("w5 w6", SamplingParams(temperature=0, max_tokens=6, ignore_eos=True, bad_words=[word]))
    assert first not in out.outputs[0].token_ids


def test_bad_arguments(tiny_llama_dir):
    with pytest.raises(ValueError, match="dtype"):
        LLM(str(tiny_llama_dir), dtype="int3", device="cpu")
    with pytest.raises(ValueError, match="block_size"):
        KvCacheConfig(block_size=4)
    with pytest.raises(ValueError, match="max_num_seqs"):
        LLM(str(tiny_llama_dir), device="cpu", max_num_seqs=0)


def test_cpu_kv_sizing_default(tiny_llama_dir):
    small = LLM(str(tiny_llama_dir), device="cpu", max_num_seqs=2, max_model_len=100)
    assert small.stats().num_blocks == 2 * 7                        # 2 seqs * ceil(100 / 16)
    capped = LLM(str(tiny_llama_dir), device="cpu", dtype=torch.float32, max_num_seqs=4,
                 kv_cache=KvCacheConfig(cpu_kv_cache_gb=1e-4))
    per_block = 2 * 2 * 16 * 2 * 16 * 4                             # layers * k/v * block * Hkv * D * fp32
    assert capped.stats().num_blocks == int(1e-4 * 2**30 // per_block)
