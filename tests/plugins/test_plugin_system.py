"""Plugin discovery: fake plugins, duplicates, broken imports, EMBER_PLUGINS, autoload off, worker processes."""

from __future__ import annotations

import importlib
import json

import pytest

from ember.cli.main import main
from ember.plugins import get_plugin_manager, hookimpl
from ember.plugins.manager import PluginManager
from ember.plugins.testing import check_plugin_registers, check_worker_process

from fakedists import DUPLICATE, make_dist, plugins_json, plugins_list, standard_dists


class FakeBackendPlugin:
    @hookimpl
    def ember_register_attention_backends(self, register):
        register("fake-backend", "ember.attention.torch_backend:TorchAttentionBackend", description="test double")


def test_fake_plugin_on_the_manager_shows_in_plugins_list(capsys):
    manager = get_plugin_manager()
    manager.add_plugin(FakeBackendPlugin(), name="fake-backend-plugin", distribution="ember-fake-backend",
                       version="9.9")
    try:
        assert main(["plugins", "list", "--json"]) == 0
        rows = json.loads(capsys.readouterr().out)["components"]
        assert {"kind": "attention_backend", "name": "fake-backend", "distribution": "ember-fake-backend",
                "version": "9.9"}.items() <= next(r for r in rows if r["name"] == "fake-backend").items()
        assert main(["plugins", "list"]) == 0
        assert "ember-fake-backend" in capsys.readouterr().out
    finally:
        manager.remove_plugin("fake-backend-plugin")
    assert ("attention_backend", "fake-backend") not in manager.registry


def test_duplicate_name_names_both_distributions_and_others_still_load():
    manager = PluginManager()
    manager.load_entry_points()

    class Dup:
        @hookimpl
        def ember_register_models(self, register):
            register("LlamaForCausalLM", "somewhere:Else")

    manager.add_plugin(Dup(), name="dup", distribution="ember-fake-dup", version="1.0")
    manager.add_plugin(FakeBackendPlugin(), name="after-dup", distribution="ember-fake-backend")
    [failure] = manager.failures
    assert failure.distribution == "ember-fake-dup"
    assert "registered twice" in failure.error and "by ember " in failure.error and "ember-fake-dup" in failure.error
    assert manager.registry.get("model", "LlamaForCausalLM").distribution == "ember"
    assert ("attention_backend", "fake-backend") in manager.registry


def test_duplicate_from_an_installed_distribution(tmp_path):
    make_dist(tmp_path, "ember-fake-dup", "fake_dup_mod", DUPLICATE, entry_point="fake-dup")
    standard_dists(tmp_path)
    data = plugins_json(tmp_path)
    dup = [f for f in data["failures"] if f["distribution"] == "ember-fake-dup"]
    assert len(dup) == 1 and "ember-fake-dup" in dup[0]["error"] and "by ember " in dup[0]["error"]
    names = {(c["kind"], c["name"]): c["distribution"] for c in data["components"]}
    assert names[("model", "LlamaForCausalLM")] == "ember"
    assert names[("model_alias", "fake-good-alias")] == "ember-fake-good"


def test_broken_import_is_reported_and_the_rest_load(tmp_path):
    standard_dists(tmp_path)
    data = plugins_json(tmp_path)
    [broken] = [f for f in data["failures"] if f["distribution"] == "ember-fake-broken"]
    assert broken["plugin"] == "ember-fake-broken" and "boom" in broken["error"]
    names = {(c["kind"], c["name"]) for c in data["components"]}
    assert {("model_alias", "fake-good-alias"), ("model", "LlamaForCausalLM"), ("attention_backend", "torch")} <= names
    table = plugins_list(tmp_path)
    assert table.returncode == 0 and "failed plugins:" in table.stdout and "ember-fake-broken" in table.stdout


def test_allow_list_loads_only_named_plugins(tmp_path):
    standard_dists(tmp_path)
    data = plugins_json(tmp_path, EMBER_PLUGINS="ember-fake-good")
    dists = {c["distribution"] for c in data["components"]}
    assert dists == {"ember", "ember-fake-good"}  # built-ins always load; the broken one is never imported
    assert data["failures"] == []


def test_disable_autoload_keeps_only_builtins(tmp_path):
    standard_dists(tmp_path)
    data = plugins_json(tmp_path, EMBER_DISABLE_PLUGIN_AUTOLOAD="1")
    assert {c["distribution"] for c in data["components"]} == {"ember"}
    assert data["failures"] == []
    assert ("model", "LlamaForCausalLM") in {(c["kind"], c["name"]) for c in data["components"]}


def test_spawned_worker_loads_plugins_again(tmp_path, monkeypatch):
    standard_dists(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # the worker inherits sys.path, then discovers on its own
    importlib.invalidate_caches()
    snapshot = check_worker_process({"model": ["LlamaForCausalLM"], "attention_backend": ["torch"],
                                     "model_alias": ["smollm2", "fake-good-alias"]})
    assert any(f[1] == "ember-fake-broken" for f in snapshot["failures"])


def test_builtin_plugins_pass_the_kit():
    from ember.attention import plugin as attention_plugin
    from ember.models import plugin as models_plugin
    check_plugin_registers(models_plugin, {"model": ["LlamaForCausalLM"], "model_alias": ["smollm2", "qwen3"]})
    # Optional backends (triton) need their own package to import; the reference backend must always load.
    check_plugin_registers(attention_plugin, {"attention_backend": ["torch", "triton"]}, load_targets=False)
    from ember.plugins import get_registry
    assert get_registry().load("attention_backend", "torch").name == "torch"


def test_kit_rejects_a_plugin_that_registers_nothing():
    class Empty:
        pass
    with pytest.raises(AssertionError, match="registered nothing"):
        check_plugin_registers(Empty())


def test_kit_rejects_a_target_that_does_not_import():
    class BadTarget:
        @hookimpl
        def ember_register_models(self, register):
            register("NopeForCausalLM", "ember.models.nope:Nope")
    with pytest.raises(AssertionError, match="cannot import 'ember.models.nope:Nope'"):
        check_plugin_registers(BadTarget())


def test_builtins_win_over_a_duplicate_whatever_its_entry_point_name(tmp_path):
    make_dist(tmp_path, "aaa-fake-dup", "fake_dup_mod", DUPLICATE)
    data = plugins_json(tmp_path)
    names = {(c["kind"], c["name"]): c["distribution"] for c in data["components"]}
    assert names.get(("model", "LlamaForCausalLM")) == "ember"
    assert names.get(("model", "Qwen3ForCausalLM")) == "ember"
