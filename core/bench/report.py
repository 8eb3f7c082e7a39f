"""Bench results: a JSON file for machines and a small aligned table for people."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any


def percentiles(values: list[float], ps: tuple[int, ...] = (50, 90, 99)) -> dict[str, float]:
    """{"p50": ..., ...} by linear interpolation (NaN when empty)."""
    if not values:
        return {f"p{p}": float("nan") for p in ps}
    if len(values) == 1:
        return {f"p{p}": values[0] for p in ps}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {f"p{p}": cuts[p - 1] for p in ps}


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:,.1f}" if abs(v) >= 10 else f"{v:.3f}"
        return str(v)

    cells = [[fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    line = lambda vals: "| " + " | ".join(v.rjust(w) for v, w in zip(vals, widths)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(columns), sep] + [line(r) for r in cells])


def write_json(path: str | Path | None, payload: dict[str, Any]) -> None:
    if path is not None:
        Path(path).write_text(json.dumps(payload, indent=2, default=str))
