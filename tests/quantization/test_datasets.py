"""Calibration / eval text sources: registry, offline built-ins, held-out splits, local files, token windows."""

import json

import pytest
import torch

from ember.plugins import get_registry
from ember.quantization.datasets import DatasetError, calibration_batches, load_texts

OFFLINE = ["lee-news", "wikipedia-sample"]


def test_every_builtin_registered():
    names = get_registry().names("calib_dataset")
    for n in ["lee-news", "wikipedia-sample", "sharegpt", "cnn_dailymail", "pileval", "wikitext2", "c4"]:
        assert n in names


@pytest.mark.parametrize("name", OFFLINE + ["sharegpt"])
def test_offline_sources_hold_out_eval(name):
    limit = 400 if name == "sharegpt" else None
    calib, ev = load_texts(name, "calib", limit), load_texts(name, "eval", limit and limit // 8)
    assert len(calib) > len(ev) > 10 and not set(calib) & set(ev)
    assert load_texts(name, "calib", limit) == calib  # deterministic
    assert all(len(t) > 50 for t in ev)


def test_wikipedia_text_is_clean_prose():
    text = load_texts("wikipedia-sample", "eval")[0]
    assert "[[" not in text and "{{" not in text and "'''" not in text and len(text.split()) > 200


def test_unknown_name_lists_registered():
    with pytest.raises(DatasetError, match=r"did you mean 'lee-news'.*registered: .*wikipedia-sample"):
        load_texts("lee_news")


def test_hub_source_missing_offline_says_how(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", "/nonexistent-ember-hf-home")
    with pytest.raises(DatasetError, match=r"abisee/cnn_dailymail.*load_dataset\('abisee/cnn_dailymail', '3.0.0'"):
        load_texts("cnn_dailymail", "calib")


def test_local_files(tmp_path):
    docs = [f"document number {i} " * 5 for i in range(10)]
    (tmp_path / "a.txt").write_text("\n\n".join(docs))
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps({"text": d}) for d in docs))
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"article": docs}), tmp_path / "a.parquet")
    for f in ["a.txt", "a.jsonl", "a.parquet"]:
        assert load_texts(tmp_path / f, "all") == [d.strip() if f == "a.txt" else d for d in docs]
        assert load_texts(tmp_path / f, "eval") == [docs[4].strip() if f == "a.txt" else docs[4],
                                                   docs[9].strip() if f == "a.txt" else docs[9]]
    with pytest.raises(DatasetError, match="no such file"):
        load_texts(tmp_path / "missing.txt")


class WordTokenizer:
    """A stand-in tokenizer: words -> ids (1 is BOS)."""

    def __init__(self, add_bos):
        self.bos_token_id, self.add_bos = 1, add_bos

    def __call__(self, text, add_special_tokens=True):
        enc = lambda t: ([1] if self.add_bos and add_special_tokens else []) + [2 + len(w) for w in t.split()]
        return {"input_ids": [enc(t) for t in text] if isinstance(text, list) else enc(text)}


@pytest.mark.parametrize("add_bos", [False, True])
def test_calibration_batches(add_bos):
    tok = WordTokenizer(add_bos)
    a = calibration_batches(tok, "lee-news", num_samples=8, seq_len=32, seed=0)
    assert a.shape == (8, 32) and a.dtype == torch.long
    assert torch.equal(a, calibration_batches(tok, "lee-news", num_samples=8, seq_len=32, seed=0))
    assert not torch.equal(a, calibration_batches(tok, "lee-news", num_samples=8, seq_len=32, seed=1))
    assert bool((a[:, 0] == 1).all()) == add_bos and not bool((a[:, 1:] == 1).any())
    with pytest.warns(UserWarning, match="overlapping"):
        b = calibration_batches(tok, "lee-news", num_samples=4000, seq_len=64)
    assert b.shape == (4000, 64)


def test_sharegpt_calibration_reads_only_what_it_needs():
    tok = WordTokenizer(False)
    a = calibration_batches(tok, "sharegpt", num_samples=16, seq_len=128, seed=3)
    assert a.shape == (16, 128) and len(set(map(tuple, a.tolist()))) == 16
