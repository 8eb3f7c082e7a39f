"""Fake installed distributions (dist-info + entry_points.txt + module) for plugin-discovery tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

GOOD = '''
from ember.plugins import hookimpl

@hookimpl
def ember_register_model_aliases(register):
    register("fake-good-alias", "acme/fake-good", kind="hub", description="from a fake distribution")
'''
BROKEN = 'raise ImportError("boom: this plugin is broken on purpose")\n'
DUPLICATE = '''
from ember.plugins import hookimpl

@hookimpl
def ember_register_models(register):
    register("LlamaForCausalLM", "fake_dup_mod:Nothing")
'''


def make_dist(root: Path, dist: str, module: str, code: str, entry_point: str | None = None) -> None:
    """Install `dist` (version 1.0) into `root`: a module plus dist-info with an `ember` entry point."""
    (root / f"{module}.py").write_text(code)
    info = root / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[ember]\n{entry_point or dist} = {module}\n")


def standard_dists(root: Path) -> Path:
    make_dist(root, "ember-fake-good", "fake_good_mod", GOOD)
    make_dist(root, "ember-fake-broken", "fake_broken_mod", BROKEN)
    return root


def plugins_list(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """`ember plugins list ARGS` in a fresh interpreter with `root` on the path and extra env vars."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("EMBER_PLUGINS", "EMBER_DISABLE_PLUGIN_AUTOLOAD")}
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), full_env.get("PYTHONPATH")]))
    full_env.update(env)
    return subprocess.run([sys.executable, "-m", "ember.cli.main", "plugins", "list", *args],
                          capture_output=True, text=True, env=full_env, timeout=300)


def plugins_json(root: Path, **env: str) -> dict:
    proc = plugins_list(root, "--json", **env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)
