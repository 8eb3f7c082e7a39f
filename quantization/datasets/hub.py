"""Hugging Face hub text (cnn_dailymail, pileval, wikitext2, c4) via `datasets`, local HF cache first."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field

from ember.quantization.datasets import DatasetError, hold_out


@dataclass(frozen=True)
class HubText:
    """Where a hub dataset's calib and eval documents live; `eval_split=None` holds out every 5th document."""

    repo: str
    column: str
    config: str | None = None
    calib_split: str = "train"
    eval_split: str | None = None
    data_files: dict[str, str] = field(default_factory=dict)


SOURCES: dict[str, HubText] = {
    "cnn_dailymail": HubText("abisee/cnn_dailymail", "article", config="3.0.0", eval_split="test"),
    "pileval": HubText("mit-han-lab/pile-val-backup", "text", calib_split="validation"),
    "wikitext2": HubText("Salesforce/wikitext", "text", config="wikitext-2-raw-v1", eval_split="test"),
    "c4": HubText("allenai/c4", "text", calib_split="train", eval_split="validation",
                  data_files={"train": "en/c4-train.00000-of-01024.json.gz",
                              "validation": "en/c4-validation.00000-of-00008.json.gz"}),
}


def _user_offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


@contextlib.contextmanager
def _cache_only():
    """Force `datasets` to read its local cache only: no 30 s of retries when the hub is unreachable."""
    import datasets.config
    import huggingface_hub.constants as hub_constants

    saved = datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = hub_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE = saved


def _missing(name: str, src: HubText, split: str, exc: BaseException) -> DatasetError:
    args = ", ".join(repr(a) for a in (src.repo, src.config) if a)
    files = f", data_files={{{split!r}: {src.data_files[split]!r}}}" if split in src.data_files else ""
    return DatasetError(
        f"dataset {name!r} ({src.repo}) is not in the local Hugging Face cache and the hub cannot be reached "
        f"({type(exc).__name__}). On a machine that is online run: python -c \"from datasets import load_dataset; "
        f"load_dataset({args}{files}, split={split!r})\", then copy ~/.cache/huggingface over (or set HF_HOME). "
        "Offline alternatives: 'lee-news', 'wikipedia-sample', 'sharegpt', or a local .txt/.jsonl/.parquet path")


def _load_split(name: str, src: HubText, split: str) -> list[str]:
    from datasets import load_dataset

    kwargs = dict(split=split)
    if src.data_files:
        kwargs["data_files"] = {split: src.data_files[split]}
    args = (src.repo, src.config) if src.config else (src.repo,)
    try:
        with _cache_only():
            ds = load_dataset(*args, **kwargs)
    except (ConnectionError, FileNotFoundError, OSError, ValueError) as cached_exc:
        if _user_offline():
            raise _missing(name, src, split, cached_exc) from cached_exc
        try:  # not cached: ask the hub (slow to fail when there is no network)
            ds = load_dataset(*args, **kwargs)
        except (ConnectionError, FileNotFoundError, OSError) as exc:
            raise _missing(name, src, split, exc) from exc
    return [str(t) for t in ds[src.column]]


def load_hub_text(name: str, split: str, limit: int | None) -> list[str]:
    src = SOURCES[name]
    if split == "all":
        texts = _load_split(name, src, src.calib_split)
        if src.eval_split:
            texts += _load_split(name, src, src.eval_split)
    elif src.eval_split is None:
        texts = hold_out(_load_split(name, src, src.calib_split), split)
    else:
        texts = _load_split(name, src, src.calib_split if split == "calib" else src.eval_split)
    return texts[:limit]


def cnn_dailymail(split: str, limit: int | None = None) -> list[str]:
    """CNN / DailyMail news articles (abisee/cnn_dailymail 3.0.0, `article`): train for calib, test for eval."""
    return load_hub_text("cnn_dailymail", split, limit)


def pileval(split: str, limit: int | None = None) -> list[str]:
    """The Pile validation set as AWQ calibrates on it (mit-han-lab/pile-val-backup)."""
    return load_hub_text("pileval", split, limit)


def wikitext2(split: str, limit: int | None = None) -> list[str]:
    """WikiText-2 raw (Salesforce/wikitext): train for calib, test for eval."""
    return load_hub_text("wikitext2", split, limit)


def c4(split: str, limit: int | None = None) -> list[str]:
    """C4 English (allenai/c4), first train and validation shards as GPTQ uses them."""
    return load_hub_text("c4", split, limit)
