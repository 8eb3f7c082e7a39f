"""Calibration / evaluation text: `load_texts(name_or_path, split)` and `calibration_batches(tokenizer, name)`.

Sources are `calib_dataset` plugins: a registered target is a function `load(split: str, limit: int | None) ->
list[str]` returning one document per item. `split` is "calib" or "eval" (disjoint documents, chosen
deterministically) or "all". A local `.txt`, `.jsonl` or `.parquet` path works wherever a name does.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from ember.plugins import get_registry
from ember.plugins.registry import unknown_message

KIND = "calib_dataset"
SPLITS = ("calib", "eval", "all")


class DatasetError(ValueError):
    """A text source is unknown, missing or empty; the message says what to do."""


def dataset_names() -> list[str]:
    """Every registered calibration / evaluation text source."""
    return get_registry().names(KIND)


def load_texts(name_or_path: str | Path, split: str = "calib", limit: int | None = None) -> list[str]:
    """Documents of a registered source (`ember datasets`) or a local .txt / .jsonl / .parquet file.

    `split="calib"` and `split="eval"` never share a document; `limit` caps the number returned.
    """
    if split not in SPLITS:
        raise DatasetError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if limit is not None and limit < 1:
        raise DatasetError(f"limit must be a positive number of documents, got {limit}")
    registry = get_registry()
    name = str(name_or_path)
    if (KIND, name) in registry:
        texts = registry.load(KIND, name)(split, limit)
    elif Path(name).expanduser().is_file():
        from ember.quantization.datasets.files import load_file

        texts = load_file(Path(name).expanduser(), split, limit)
    else:
        looks_like_path = any(name.endswith(ext) for ext in (".txt", ".jsonl", ".parquet")) or "/" in name
        hint = f"; no such file {name}" if looks_like_path else ""
        raise DatasetError(unknown_message("calibration dataset", name, registry.names(KIND))
                           + f"; a local .txt, .jsonl or .parquet path works too{hint}")
    texts = [t for t in texts if t and t.strip()]
    if not texts:
        raise DatasetError(f"dataset {name!r} split {split!r} has no text")
    return texts[:limit] if limit is not None else texts


def adds_bos(tokenizer: Any) -> bool:
    """True when the tokenizer itself starts every encoded text with BOS (Gemma, Llama 2/3); then every window
    must start with BOS too, or the model sees text it was never trained on."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return False
    ids = tokenizer("hello world")["input_ids"]
    return len(ids) > 0 and ids[0] == bos


def token_stream(tokenizer: Any, texts: list[str], separator: str = "\n\n",
                 max_tokens: int | None = None) -> list[int]:
    """Documents tokenized one by one (no special tokens) and joined by `separator`'s tokens; stops after the
    document that reaches `max_tokens` (tokenizing all of ShareGPT would take minutes)."""
    sep = tokenizer(separator, add_special_tokens=False)["input_ids"] if separator else []
    stream: list[int] = []
    for start in range(0, len(texts), 64):
        for ids in tokenizer(texts[start:start + 64], add_special_tokens=False)["input_ids"]:
            if stream:
                stream += sep
            stream += ids
        if max_tokens is not None and len(stream) >= max_tokens:
            break
    return stream


def calibration_batches(tokenizer: Any, name: str | Path, num_samples: int = 512, seq_len: int = 512,
                        seed: int = 1234, split: str = "calib", bos: bool | None = None) -> torch.Tensor:
    """Token windows [num_samples, seq_len] (int64) cut from the source's calib documents.

    Only the first documents holding 4x the needed tokens are read. Non-overlapping windows, a seeded random
    choice of them; when the text holds fewer than `num_samples`
    windows, windows start at seeded random offsets instead (overlapping) and a warning says so.
    `bos=None` prepends BOS to every window exactly when the tokenizer adds it itself (see `adds_bos`).
    """
    if num_samples < 1 or seq_len < 2:
        raise DatasetError(f"need num_samples >= 1 and seq_len >= 2, got {num_samples} and {seq_len}")
    use_bos = adds_bos(tokenizer) if bos is None else bos
    body = seq_len - 1 if use_bos else seq_len
    texts = load_texts(name, split)
    stream = torch.tensor(token_stream(tokenizer, texts, max_tokens=4 * num_samples * body), dtype=torch.long)
    if stream.numel() < body:
        raise DatasetError(f"dataset {str(name)!r} has {stream.numel()} tokens, fewer than one window of {body}")
    gen = torch.Generator().manual_seed(seed)
    full = stream.numel() // body
    if full >= num_samples:
        starts = torch.randperm(full, generator=gen)[:num_samples].sort().values * body
    else:
        warnings.warn(f"dataset {str(name)!r} holds {full} windows of {seq_len} tokens, fewer than {num_samples}: "
                      "sampling overlapping windows at random offsets", stacklevel=2)
        starts = torch.randint(0, stream.numel() - body + 1, (num_samples,), generator=gen)
    windows = torch.stack([stream[s:s + body] for s in starts.tolist()])  # [N, body]
    if use_bos:
        windows = torch.cat([torch.full((num_samples, 1), tokenizer.bos_token_id, dtype=torch.long), windows], 1)
    return windows  # [N, S]


def hold_out(items: list, split: str, every: int = 5) -> list:
    """The deterministic calib / eval split of sources without their own: duplicates dropped, then every
    `every`-th document is eval."""
    items = list(dict.fromkeys(items))
    if split == "all":
        return list(items)
    keep_eval = split == "eval"
    return [x for i, x in enumerate(items) if (i % every == every - 1) == keep_eval]
