"""ember.evaluation.perplexity: equals transformers on the same windows; real SmolLM2 figures (slow)."""

import math
import time

import pytest
import torch
import torch.nn.functional as F

from ember.evaluation import eval_windows, perplexity


def hf_ppl(hf_model, windows):
    nll, n = 0.0, 0
    with torch.no_grad():
        for window, first in windows:
            logits = hf_model(torch.tensor([window])).logits[0].float()
            nll += float(F.cross_entropy(logits[first - 1:-1], torch.tensor(window[first:]), reduction="sum"))
            n += len(window) - first
    return math.exp(nll / n), n


def test_eval_windows_scoring():
    toks = list(range(100, 140))
    w = eval_windows(toks, 10, None, None, None)
    assert [x[1] for x in w] == [1] * 4 and w[1][0] == toks[10:20]
    w = eval_windows(toks, 10, 2, 5, None)  # overlap: the 2nd window scores only its last 5
    assert w[1] == (toks[5:15], 5)
    w = eval_windows(toks, 10, 3, None, 7)  # BOS first, every text token scored
    assert w[1] == ([7] + toks[9:18], 1)


@pytest.mark.parametrize("bos,stride", [(False, None), (True, None), (False, 40)])
def test_perplexity_equals_transformers(tiny_llama_dir, bos, stride):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ember.loader.build import load_model
    from ember.quantization.datasets import token_stream

    tok = AutoTokenizer.from_pretrained(str(tiny_llama_dir))
    g = torch.Generator().manual_seed(0)
    texts = [" ".join(f"w{int(i)}" for i in torch.randint(3, 300, (97,), generator=g)) for _ in range(6)]
    ours = perplexity(load_model(tiny_llama_dir, torch.float32, "cpu"), texts, tok, seq_len=64, num_windows=5,
                      stride=stride, bos=bos, batch_size=2)
    hf = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir), dtype=torch.float32).eval()
    windows = eval_windows(token_stream(tok, texts), 64, 5, stride, tok.bos_token_id if bos else None)
    ref, n = hf_ppl(hf, windows)
    assert ours.windows == 5 and ours.tokens == n
    assert abs(ours.ppl - ref) / ref < 1e-3, (ours, ref)
    assert perplexity(tiny_llama_dir, texts, tok, seq_len=64, num_windows=5, stride=stride, bos=bos).ppl == \
        pytest.approx(ours.ppl, rel=1e-5)  # by path


@pytest.mark.slow
def test_smollm2_perplexity_matches_data_md(smollm2_dir):
    """SmolLM2 fp32 on wikipedia-sample (all articles, joined by blank lines), 16 windows x 512 tokens, no BOS
    (SmolLM2's tokenizer adds none): data.md measured 22.6 with transformers. ~100 s on 2 busy cores."""
    from transformers import AutoTokenizer

    from ember.loader.build import load_model

    model, tok = load_model(smollm2_dir, torch.float32, "cpu"), AutoTokenizer.from_pretrained(str(smollm2_dir))
    t = time.time()
    wiki = perplexity(model, "wikipedia-sample", tok, split="all")
    print(f"\nSmolLM2 ppl wikipedia-sample(all)={wiki.ppl:.3f} in {time.time() - t:.1f}s")
    assert wiki.tokens == 16 * 511 and wiki.windows == 16
    assert abs(wiki.ppl - 22.6) / 22.6 < 0.02
