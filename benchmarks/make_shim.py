"""Make `ember` importable from a working tree without installing it (GPU machines: no pip index, no build).

    python benchmarks/make_shim.py /tmp/shim && export PYTHONPATH=/tmp/shim

Builds /tmp/shim/ember as a real folder of symlinks to core/* plus the top-level subpackages (models, plugins, ...),
and an `ember-0.0.0.dist-info` with the pyproject's entry points, so the built-in plugins load exactly as they do
from an install (the plugin manager finds them through importlib.metadata)."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path


def make_shim(repo: Path, target: Path) -> None:
    pyproject = tomllib.loads((repo / "pyproject.toml").read_text())
    pkg = target / "ember"
    pkg.mkdir(parents=True, exist_ok=True)
    for entry in (repo / "core").iterdir():
        link = pkg / entry.name
        if not link.exists():
            link.symlink_to(entry.resolve())
    for name, folder in pyproject["tool"]["setuptools"]["package-dir"].items():
        if name != "ember" and (repo / folder).is_dir():
            link = pkg / name.split(".", 1)[1]
            if not link.exists():
                link.symlink_to((repo / folder).resolve())
    info = target / f"ember-{pyproject['project']['version']}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: ember\nVersion: {pyproject['project']['version']}\n")
    groups = pyproject["project"].get("entry-points", {})
    lines = []
    for group, eps in groups.items():
        lines.append(f"[{group}]")
        lines += [f"{k} = {v}" for k, v in eps.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    make_shim(Path(__file__).resolve().parents[1], Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/shim"))
