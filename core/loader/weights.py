"""Iterate the tensors of a local safetensors checkpoint (single file or sharded), one mmap'd tensor at a time."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; `file` and `tensor` name the culprit where known."""

    def __init__(self, message: str, file: str | Path | None = None, tensor: str | None = None) -> None:
        self.message = message
        self.file = str(file) if file is not None else None
        self.tensor = tensor
        where = ", ".join(p for p in (f"file {self.file}" if self.file else "",
                                      f"tensor {tensor!r}" if tensor else "") if p)
        super().__init__(f"{message} ({where})" if where else message)


class SafetensorsCheckpoint:
    """The tensors of one checkpoint folder: `for name, tensor in ckpt` reads them lazily, file by file.

    Sharded checkpoints are described by `model.safetensors.index.json` (its `weight_map` names the file of every
    tensor); otherwise every `*.safetensors` file in the folder is read. Shapes can be checked without reading data.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise CheckpointError(f"checkpoint folder {self.path} does not exist")
        self.weight_map = self._weight_map()  # tensor name -> file name (None: learn it by opening the file)
        self.files = sorted({f for f in self.weight_map.values()}) if self.weight_map else self._plain_files()

    def _weight_map(self) -> dict[str, str] | None:
        index = self.path / INDEX_FILE
        if not index.exists():
            return None
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (OSError, ValueError, KeyError) as exc:
            raise CheckpointError(f"unreadable safetensors index: {exc}", file=index) from exc
        missing = sorted({f for f in weight_map.values() if not (self.path / f).exists()})
        if missing:
            raise CheckpointError(f"the index lists shard(s) that are not in {self.path}: {', '.join(missing)}",
                                  file=index)
        return weight_map

    def _plain_files(self) -> list[str]:
        files = sorted(p.name for p in self.path.glob("*.safetensors"))
        if not files:
            raise CheckpointError(f"no *.safetensors files (nor {INDEX_FILE}) in {self.path}")
        return files

    def _open(self, file: str):
        try:
            return safe_open(str(self.path / file), framework="pt", device="cpu")
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"cannot read safetensors file (corrupt or truncated?): {exc}",
                                  file=self.path / file) from exc

    def file_of(self, name: str) -> str | None:
        """Which file holds tensor `name` (None if unknown without opening every file)."""
        return self.weight_map.get(name) if self.weight_map else (self.files[0] if len(self.files) == 1 else None)

    def __iter__(self) -> Iterator[tuple[str, torch.Tensor]]:
        for file in self.files:
            with self._open(file) as f:
                present = set(f.keys())
                wanted = sorted(n for n, fl in self.weight_map.items() if fl == file) if self.weight_map \
                    else sorted(present)
                for name in wanted:
                    if name not in present:
                        raise CheckpointError("tensor listed in the index is missing from its shard",
                                              file=self.path / file, tensor=name)
                    try:
                        tensor = f.get_tensor(name)
                    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
                        raise CheckpointError(f"cannot read tensor: {exc}", file=self.path / file,
                                              tensor=name) from exc
                    yield name, tensor


def iter_safetensors(path: str | Path) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) for every tensor of the checkpoint folder `path`."""
    yield from SafetensorsCheckpoint(path)
