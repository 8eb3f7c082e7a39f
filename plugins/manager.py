"""Loads plugins from the `ember` entry-point group (built-ins included) and fills the registry, one plugin at a time."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from importlib import metadata
from types import ModuleType
from typing import Any

import pluggy

from ember.plugins import hookspecs
from ember.plugins.registry import HOOK_KINDS, Component, DuplicateComponentError, PluginError, Registry

logger = logging.getLogger("ember.plugins")

ENTRY_POINT_GROUP = "ember"
ALLOW_ENV = "EMBER_PLUGINS"  # comma-separated entry-point or distribution names to load; unset = all
DISABLE_ENV = "EMBER_DISABLE_PLUGIN_AUTOLOAD"  # "1": load only ember's own built-ins


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that failed to import or to register; the others still load."""

    plugin: str
    distribution: str
    error: str


@dataclass
class LoadedPlugin:
    name: str
    module: Any
    distribution: str
    version: str


class PluginManager:
    """pluggy validates hook signatures; each plugin's hooks are called on their own so one failure stays contained."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("ember")
        self.pm.add_hookspecs(hookspecs)
        self.registry = Registry()
        self.plugins: list[LoadedPlugin] = []
        self.failures: list[PluginFailure] = []

    # -- discovery ---------------------------------------------------------------------------------------------
    def load_entry_points(self) -> None:
        allow = _allow_list()
        builtin_only = os.environ.get(DISABLE_ENV, "").strip().lower() in ("1", "true", "yes")
        # ember's own built-ins first, so a third-party duplicate can never displace them whatever its name.
        eps = [(ep, *_dist_of(ep)) for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)]
        for ep, dist, version in sorted(eps, key=lambda e: (e[1] != "ember", e[0].name)):
            is_builtin = dist == "ember"
            if builtin_only and not is_builtin:
                continue
            if allow is not None and not is_builtin and ep.name not in allow and dist not in allow:
                continue
            try:
                module = ep.load()
            except Exception as exc:  # a broken plugin must not take the others down
                self._fail(ep.name, dist, f"import of {ep.value!r} failed: {exc!r}")
                continue
            self.add_plugin(module, name=ep.name, distribution=dist, version=version)

    def add_plugin(self, module: ModuleType | Any, name: str, distribution: str, version: str = "0") -> None:
        """Register one plugin object (a module or any object with hookimpls) and run its hooks now."""
        try:
            self.pm.register(module, name=name)
        except Exception as exc:
            self._fail(name, distribution, f"invalid hooks: {exc}")
            return
        self.plugins.append(LoadedPlugin(name, module, distribution, version))
        for hook_name, kind in HOOK_KINDS.items():
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                if impl.plugin is not module:
                    continue
                try:
                    impl.function(register=self._register_fn(kind, name, distribution, version))
                except Exception as exc:
                    self._fail(name, distribution, f"{hook_name} failed: {exc}")

    def remove_plugin(self, name: str) -> None:
        """Unregister a plugin and everything it registered (tests use this in `finally`)."""
        plugin = next((p for p in self.plugins if p.name == name), None)
        if plugin is None:
            return
        self.pm.unregister(name=name)
        self.plugins.remove(plugin)
        for comp in self.registry.components():
            if comp.distribution == plugin.distribution and comp.metadata.get("_plugin") == name:
                self.registry.remove(comp.kind, comp.name)

    # -- internals ---------------------------------------------------------------------------------------------
    def _register_fn(self, kind: str, plugin_name: str, distribution: str, version: str):
        def register(name: str, target: str, **meta: Any) -> None:
            if not isinstance(target, str):
                raise PluginError(f"{kind} {name!r}: target must be a 'module:attribute' string "
                                  f"(registration is lazy), got {type(target).__name__}")
            try:
                self.registry.add(Component(kind, name, target, distribution, version,
                                            {**meta, "_plugin": plugin_name}))
            except DuplicateComponentError as exc:  # reject this one component; the plugin's others still load
                self._fail(plugin_name, distribution, str(exc))

        return register

    def _fail(self, plugin: str, distribution: str, error: str) -> None:
        failure = PluginFailure(plugin, distribution, error)
        self.failures.append(failure)
        logger.warning("ember plugin %r from %s was not loaded: %s", plugin, distribution, error)


def _allow_list() -> set[str] | None:
    raw = os.environ.get(ALLOW_ENV)
    if raw is None or not raw.strip():
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


def _dist_of(ep: metadata.EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "unknown", "0"
    return dist.metadata["Name"] or "unknown", dist.version or "0"


_manager: PluginManager | None = None
_lock = threading.Lock()


def get_plugin_manager() -> PluginManager:
    """The process-wide manager, built on first use; a fresh worker process builds (loads plugins) again."""
    global _manager
    with _lock:
        if _manager is None:
            manager = PluginManager()
            manager.load_entry_points()
            _manager = manager
        return _manager


def get_registry() -> Registry:
    return get_plugin_manager().registry


def reset_plugin_manager() -> None:
    """Forget loaded plugins; the next call loads them again (used by tests and after env changes)."""
    global _manager
    with _lock:
        _manager = None
