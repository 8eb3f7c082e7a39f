"""Every registered architecture matches transformers: prefill, decode, greedy, batched and chunked prefill."""

from __future__ import annotations

import pytest
import torch

from ember.loader.build import load_model
from ember.plugins import get_registry

from model_driver import PagedDriver, tiny_hf_model

ARCHS = get_registry().names("model")
PROMPT_LEN, NEW_TOKENS, ATOL = 20, 32, 1e-4


@pytest.fixture(scope="module", params=ARCHS)
def pair(request, tmp_path_factory):
    """(architecture, transformers model, ember model loaded from its save_pretrained folder)."""
    arch = request.param
    hf = tiny_hf_model(arch)
    path = tmp_path_factory.mktemp(arch)
    hf.save_pretrained(path)
    ember = load_model(path, dtype=torch.float32, device="cpu")
    assert type(ember).__name__ == arch
    return arch, hf, ember


def prompt(hf, n: int = PROMPT_LEN, seed: int = 1) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, hf.config.vocab_size, (n,), generator=g).tolist()


@torch.no_grad()
def hf_logits(hf, tokens: list[int]) -> torch.Tensor:
    return hf(torch.tensor([tokens])).logits[0].float()


def test_prefill_matches(pair):
    arch, hf, ember = pair
    tokens = prompt(hf)
    got = PagedDriver(ember).step({0: tokens})[0]
    torch.testing.assert_close(got, hf_logits(hf, tokens), atol=ATOL, rtol=1e-4, msg=lambda m: f"{arch}: {m}")


def test_decode_and_greedy_match(pair):
    arch, hf, ember = pair
    tokens = prompt(hf, seed=2)
    new, step_logits = PagedDriver(ember).greedy(tokens, NEW_TOKENS)
    ref = hf.generate(torch.tensor([tokens]), max_new_tokens=NEW_TOKENS, do_sample=False, min_new_tokens=NEW_TOKENS,
                      pad_token_id=0)[0, len(tokens):].tolist()
    assert new == ref, f"{arch}: greedy tokens differ"
    # logits of every decode step == the full-sequence forward at that position
    full = hf_logits(hf, tokens + new[:-1])[len(tokens) - 1:]
    torch.testing.assert_close(step_logits, full, atol=ATOL, rtol=1e-4, msg=lambda m: f"{arch}: {m}")


def test_batched_equals_alone(pair):
    arch, hf, ember = pair
    seqs = {0: prompt(hf, 23, seed=3), 1: prompt(hf, 5, seed=4), 2: prompt(hf, 13, seed=5)}
    batched = PagedDriver(ember).step(seqs)
    for sid, tokens in seqs.items():
        alone = PagedDriver(ember).step({sid: tokens})[sid]
        torch.testing.assert_close(batched[sid], alone, atol=1e-5, rtol=1e-5, msg=lambda m: f"{arch} seq {sid}: {m}")
        torch.testing.assert_close(batched[sid], hf_logits(hf, tokens), atol=ATOL, rtol=1e-4)
    # a decode step for all three at once, at different lengths
    nxt = {sid: [int(batched[sid][-1].argmax())] for sid in seqs}
    driver = PagedDriver(ember)
    driver.step(seqs)
    step = driver.step(nxt)
    for sid, tokens in seqs.items():
        torch.testing.assert_close(step[sid][0], hf_logits(hf, tokens + nxt[sid])[-1], atol=ATOL, rtol=1e-4)


def test_chunked_prefill(pair):
    arch, hf, ember = pair
    tokens = prompt(hf, 21, seed=6)
    driver = PagedDriver(ember)
    first = driver.step({0: tokens[:9]})[0]
    second = driver.step({0: tokens[9:]})[0]
    torch.testing.assert_close(torch.cat([first, second]), hf_logits(hf, tokens), atol=ATOL, rtol=1e-4,
                               msg=lambda m: f"{arch}: {m}")
