"""The example third-party plugin (plugins/examples/ember-model-granite) installs, registers and passes the kit."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "plugins" / "examples" / "ember-model-granite"


@pytest.fixture(scope="module")
def granite_installed():
    """Install the example the way its README says (editable, no deps) unless .ci/run already did."""
    try:
        metadata.distribution("ember-model-granite")
    except metadata.PackageNotFoundError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-e",
                        str(EXAMPLE)], check=True, timeout=300)
    return EXAMPLE


def test_example_passes_its_own_conformance_tests(granite_installed):
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                          cwd=granite_installed, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "3 passed" in proc.stdout


def test_example_shows_in_plugins_list(granite_installed):
    proc = subprocess.run([sys.executable, "-m", "ember.cli.main", "plugins", "list", "--kind", "model"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    row = next(line.split() for line in proc.stdout.splitlines() if "GraniteForCausalLM" in line)
    assert row == ["model", "GraniteForCausalLM", "ember-model-granite", "0.1.0"]


def test_example_is_not_in_embers_wheel():
    """ember's explicit package list ships core/, models/, plugins/... but never plugins/examples."""
    import tomllib
    config = tomllib.loads((EXAMPLE.parents[2] / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert not any("example" in p for p in config["packages"])
    assert not any("example" in p for p in config["package-dir"].values())


def test_a_forgotten_multiplier_fails_the_kit(granite_installed):
    """The kit has teeth: Granite without logits_scaling must not pass."""
    code = ("import ember_model_granite as g\n"
            "from ember.plugins.testing import check_architecture\n"
            "g.GraniteForCausalLM.compute_logits = g.LlamaForCausalLM.compute_logits\n"
            "try:\n    check_architecture('GraniteForCausalLM', check_generate=False)\n"
            "except AssertionError as e:\n    print('KIT-FAILED', e)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert "KIT-FAILED GraniteForCausalLM prefill" in proc.stdout, proc.stdout + proc.stderr
