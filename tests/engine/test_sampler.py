"""Sampler: every parameter changes the distribution as specified; seeded draws ignore batch composition."""

import itertools

import pytest
import torch

from ember.engine.sampler import Sampler, SamplingBatch, apply_penalties
from ember.engine.sequence import Request, Sequence
from ember.sampling_params import SamplingParams

V = 16
_ids = itertools.count()


def seq(params: SamplingParams, prompt=(1, 2, 3), output=(), bad_words=(), seed_index=0) -> Sequence:
    req = Request(str(next(_ids)), None, list(prompt), params, bad_words_ids=[list(w) for w in bad_words])
    gen = torch.Generator().manual_seed(params.seed + seed_index) if params.seed is not None else None
    s = Sequence(next(_ids), req, 0, list(prompt), gen, None)
    s.token_ids += list(output)
    return s


def draw(logits_row: torch.Tensor, params: SamplingParams, n: int = 4000, **kw) -> torch.Tensor:
    """n independent samples of one row (n copies in one batch), drawn from the shared generator."""
    seqs = [seq(params, **kw) for _ in range(n)]
    batch = SamplingBatch.build(seqs, eos_ids=[15], vocab_size=V, device=torch.device("cpu"))
    sampled, _ = Sampler(torch.device("cpu"), seed=0)(logits_row.expand(n, V).clone(), batch)
    return sampled


def probs_row(p: list[float]) -> torch.Tensor:
    full = torch.full((V,), 1e-9)
    full[:len(p)] = torch.tensor(p)
    return full.log()


def test_greedy_is_argmax_and_temperature_sampling_matches_softmax():
    logits = torch.randn(V, generator=torch.Generator().manual_seed(1))
    assert (draw(logits, SamplingParams(temperature=0), n=5) == logits.argmax()).all()
    samples = draw(logits, SamplingParams(temperature=0.7), n=20000)
    freq = torch.bincount(samples, minlength=V).float() / samples.numel()
    assert torch.allclose(freq, (logits / 0.7).softmax(-1), atol=0.015)


def test_top_k_restricts_support():
    logits = torch.zeros(V)
    logits[:4] = torch.tensor([3.0, 2.0, 1.0, 0.5])
    assert set(draw(logits, SamplingParams(top_k=2)).tolist()) == {0, 1}
    assert len(set(draw(logits, SamplingParams()).tolist())) > 4      # without top-k the tail is sampled


def test_top_p_keeps_smallest_set_reaching_p():
    logits = probs_row([0.5, 0.3, 0.1, 0.1])
    assert set(draw(logits, SamplingParams(top_p=0.7)).tolist()) == {0, 1}
    assert set(draw(logits, SamplingParams(top_p=0.85)).tolist()) == {0, 1, 2}


def test_min_p_drops_tokens_below_fraction_of_max():
    logits = probs_row([0.5, 0.3, 0.15, 0.05])
    assert set(draw(logits, SamplingParams(min_p=0.2)).tolist()) == {0, 1, 2}   # threshold 0.1
    assert set(draw(logits, SamplingParams(min_p=0.5)).tolist()) == {0, 1}      # threshold 0.25


def test_penalties_follow_the_definitions():
    logits = torch.tensor([[2.0, -2.0, 2.0, -2.0, 1.0]])
    prompt = torch.tensor([[0, 1, 5]])             # 5 = padding (vocab size)
    output = torch.tensor([[2, 2, 3, 5]])
    out = apply_penalties(logits, torch.tensor([[2.0, 0.0, 0.0]]), prompt, output)
    assert out.tolist() == [[1.0, -4.0, 1.0, -4.0, 1.0]]            # repetition: prompt and output tokens
    out = apply_penalties(logits, torch.tensor([[1.0, 0.5, 0.0]]), prompt, output)
    assert out.tolist() == [[2.0, -2.0, 1.5, -2.5, 1.0]]            # presence: output tokens only, once
    out = apply_penalties(logits, torch.tensor([[1.0, 0.0, 0.25]]), prompt, output)
    assert out.tolist() == [[2.0, -2.0, 1.5, -2.25, 1.0]]           # frequency: times the count


def test_repetition_penalty_changes_greedy_choice_through_sampler():
    logits = probs_row([0.4, 0.35])
    p = SamplingParams(temperature=0, repetition_penalty=1.0)
    assert draw(logits, p, n=1, prompt=(5,), output=(0,)).item() == 0
    p = SamplingParams(temperature=0, repetition_penalty=5.0)
    assert draw(logits, p, n=1, prompt=(5,), output=(0,)).item() == 1


def test_seeded_sampling_is_independent_of_batch_composition():
    g = torch.Generator().manual_seed(3)
    rows = [torch.randn(V, generator=g) for _ in range(5)]
    p = SamplingParams(temperature=1.0, seed=1234)

    def run(my_row: int, others: list[int]) -> list[int]:
        me = seq(p)
        batch_seqs = [seq(SamplingParams(temperature=1.0)) for _ in others] + [me]
        order = others + [my_row]
        sampler = Sampler(torch.device("cpu"), seed=99)
        got = []
        for _ in range(6):
            b = SamplingBatch.build(batch_seqs, [], V, torch.device("cpu"))
            sampled, _ = sampler(torch.stack([rows[i] for i in order]), b)
            got.append(sampled[-1].item())
        return got

    alone = run(0, [])
    assert run(0, [1, 2, 3]) == alone == run(0, [4])
    other_seed = SamplingParams(temperature=1.0, seed=4321)
    sampler = Sampler(torch.device("cpu"), seed=0)
    s2 = seq(other_seed)
    draws = [sampler(rows[0][None].clone(), SamplingBatch.build([s2], [], V, torch.device("cpu")))[0].item()
             for _ in range(6)]
    assert draws != alone


def test_bad_words_never_completed():
    logits = probs_row([0.9, 0.05, 0.05])
    p = SamplingParams(temperature=0)
    assert draw(logits, p, n=1, bad_words=[[0]]).item() != 0                              # single-token word
    assert draw(logits, p, n=1, bad_words=[[3, 0]], output=(3,)).item() != 0              # prefix matched
    assert draw(logits, p, n=1, bad_words=[[3, 0]], output=(4,)).item() == 0              # prefix not matched
    samples = draw(logits, SamplingParams(temperature=1.0), bad_words=[[0], [1]])
    assert 0 not in samples.tolist() and 1 not in samples.tolist()


def test_min_tokens_bans_eos_and_stop_tokens():
    logits = torch.zeros(V)
    logits[15], logits[14], logits[3] = 10.0, 9.0, 8.0                  # eos (15) and a stop token (14) lead
    p = SamplingParams(temperature=0, min_tokens=2, stop_token_ids=[14])
    assert draw(logits, p, n=1, output=(5,)).item() == 3
    assert draw(logits, p, n=1, output=(5, 6)).item() == 15
    # with ignore_eos the eos token is an ordinary token: not banned, so it can win
    assert draw(logits, SamplingParams(temperature=0, min_tokens=2, ignore_eos=True), n=1).item() == 15


def test_logprobs_are_raw_log_softmax_with_sampled_token():
    logits = torch.randn(2, V, generator=torch.Generator().manual_seed(5))
    seqs = [seq(SamplingParams(temperature=0, logprobs=3)), seq(SamplingParams(temperature=0, logprobs=1))]
    batch = SamplingBatch.build(seqs, [], V, torch.device("cpu"))
    sampled, lp = Sampler(torch.device("cpu"), 0)(logits, batch)
    ref = logits.log_softmax(-1)
    assert lp.shape == (2, 1 + 2 * 3)
    assert torch.allclose(lp[:, 0], ref.gather(1, sampled[:, None])[:, 0].double())
    top = ref.topk(3, dim=-1)
    assert torch.allclose(lp[:, 1:4], top.values.double()) and (lp[:, 4:].long() == top.indices).all()


@pytest.mark.parametrize("field,value", [("temperature", -1.0), ("temperature", None), ("top_p", 0.0), ("top_k", -3), ("min_p", 1.5),
                                         ("max_tokens", 0), ("n", 0), ("repetition_penalty", 0.0),
                                         ("presence_penalty", 3.0), ("logprobs", 50), ("stop", [""])])
def test_invalid_params_raise_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        SamplingParams(**{field: value})


def test_min_tokens_above_max_tokens_rejected():
    with pytest.raises(ValueError, match=r"min_tokens.*max_tokens=4"):
        SamplingParams(max_tokens=4, min_tokens=5)
