"""Local text files as calibration / evaluation sources: .txt, .jsonl and .parquet."""

from __future__ import annotations

import json
from pathlib import Path

from ember.quantization.datasets import DatasetError, hold_out

TEXT_COLUMNS = ("text", "article", "content", "document")


def load_file(path: Path, split: str, limit: int | None = None) -> list[str]:
    """Documents of a local file: .txt (blank-line separated paragraphs), .jsonl or .parquet (first of the
    columns text / article / content / document, or ShareGPT-style `conversations`); every 5th one is eval."""
    suffix = path.suffix.lower()
    if suffix == ".txt":
        raw = path.read_text(encoding="utf-8", errors="replace")
        docs = [p.strip() for p in raw.replace("\r\n", "\n").split("\n\n") if p.strip()]
    elif suffix == ".jsonl":
        rows = []
        with path.open(encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise DatasetError(f"{path}:{lineno} is not valid JSON: {exc}") from exc
        docs = [_row_text(row, path) for row in rows]
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        column = next((c for c in TEXT_COLUMNS if c in table.column_names), None)
        if column is None:
            raise DatasetError(f"{path} has no text column; expected one of {', '.join(TEXT_COLUMNS)}, "
                               f"found {', '.join(table.column_names)}")
        docs = [str(t) for t in table.column(column).to_pylist() if t]
    else:
        raise DatasetError(f"{path}: unsupported file type {suffix or '(none)'}; use .txt, .jsonl or .parquet")
    if len(docs) == 1 and split != "all":
        raise DatasetError(f"{path} holds a single document, so calib and eval cannot be told apart; "
                           "separate documents by blank lines (.txt) or rows (.jsonl / .parquet), or use split='all'")
    return hold_out(docs, split)[:limit]


def _row_text(row: object, path: Path) -> str:
    if isinstance(row, str):
        return row
    if isinstance(row, dict):
        for column in TEXT_COLUMNS:
            if isinstance(row.get(column), str):
                return row[column]
        if isinstance(row.get("conversations"), list):
            from ember.quantization.datasets.offline import sharegpt_conversation_text

            return sharegpt_conversation_text(row)
    raise DatasetError(f"{path}: a row has none of the text fields {', '.join(TEXT_COLUMNS)} or conversations")
