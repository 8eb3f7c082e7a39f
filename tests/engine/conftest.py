"""Engine test fixtures: a tiny random Llama (fp32) with a byte-level BPE tokenizer and a chat template."""

from __future__ import annotations

import pytest
import torch

CHAT_TEMPLATE = ("{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<s>assistant:{% endif %}")


def write_byte_tokenizer(path) -> int:
    """Byte-level BPE over the 256 byte symbols with a few merges; returns the vocab size (specials included)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    merges = [("t", "h"), ("th", "e"), ("Ġ", "a"), ("i", "n"), ("e", "r")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    vocab["<s>"], vocab["</s>"] = len(vocab), len(vocab) + 1
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>")
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(str(path))
    return len(vocab)


def write_tiny_llama(path, max_position_embeddings: int = 256, seed: int = 0):
    """A random 2-layer GQA Llama saved in fp32 next to the byte tokenizer; returns the HF model."""
    from transformers import LlamaConfig, LlamaForCausalLM

    vocab = write_byte_tokenizer(path)
    cfg = LlamaConfig(vocab_size=vocab + 6, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=max_position_embeddings,
                      bos_token_id=vocab - 2, eos_token_id=vocab - 1, tie_word_embeddings=False,
                      initializer_range=0.3)   # peaky random logits: varied greedy text, no near-ties
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg).to(torch.float32).eval()
    model.save_pretrained(str(path))
    return model


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-byte-llama")
    write_tiny_llama(path)
    return path


@pytest.fixture(scope="session")
def hf_model(tiny_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(tiny_dir), dtype=torch.float32).eval()


@pytest.fixture(scope="session")
def tokenizer(tiny_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_dir))
