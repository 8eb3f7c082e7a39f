"""Incremental detokenization: streamed pieces never contain half a character and add up to the full text."""

from ember.engine.detokenizer import IncrementalDetokenizer


def test_multibyte_characters_are_held_back_until_complete(tokenizer):
    text = "héllo wörld 😀 the end ✓"
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert len(ids) > len(text)                        # byte-level: multi-byte chars span several tokens
    detok = IncrementalDetokenizer(tokenizer, tokenizer.encode("prompt", add_special_tokens=False))
    pieces = [detok.add(t) for t in ids]
    assert all("\ufffd" not in p for p in pieces)
    assert "".join(pieces) + detok.flush() == text == detok.text
    assert "" in pieces                                # some tokens really were held back


def test_flush_emits_dangling_bytes(tokenizer):
    ids = tokenizer.encode("a😀", add_special_tokens=False)[:-1]   # cut inside the emoji
    detok = IncrementalDetokenizer(tokenizer, [])
    assert "".join(detok.add(t) for t in ids) == "a"
    assert detok.flush().startswith("\ufffd")
