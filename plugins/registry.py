"""Lazy, validated registries of plugin components, one per kind (model, attention_backend, ...)."""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from typing import Any

# hook name -> registry kind
HOOK_KINDS: dict[str, str] = {
    "ember_register_models": "model",
    "ember_register_model_aliases": "model_alias",
    "ember_register_attention_backends": "attention_backend",
    "ember_register_quant_recipes": "quant_recipe",
    "ember_register_draft_methods": "draft_method",
    "ember_register_adapter_formats": "adapter_format",
    "ember_register_calib_datasets": "calib_dataset",
}
KINDS = tuple(HOOK_KINDS.values())


class PluginError(Exception):
    """A plugin could not be loaded or registered something invalid."""


class DuplicateComponentError(PluginError):
    """Two plugins registered the same name for the same kind."""


class UnknownComponentError(KeyError, PluginError):
    """A name that no plugin registered; the message lists what exists."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly.
        return str(self.args[0])


@dataclass(frozen=True)
class Component:
    """One registered thing: `target` is a lazy "module:attr" reference, or a plain value (e.g. a hub repo id)."""

    kind: str
    name: str
    target: str
    distribution: str
    version: str
    metadata: dict[str, Any] = field(default_factory=dict)

    def load(self) -> Any:
        """Import and return the object that `target` names."""
        module_name, _, attr = self.target.partition(":")
        if not attr:
            raise PluginError(f"{self.kind} {self.name!r} from {self.distribution}: target {self.target!r} "
                              "is not of the form 'package.module:attribute'")
        try:
            obj: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except Exception as exc:
            raise PluginError(f"{self.kind} {self.name!r} from {self.distribution} {self.version}: "
                              f"cannot import {self.target!r}: {exc!r}") from exc
        return obj


class Registry:
    """Components of every kind, keyed by (kind, name); names are case-sensitive."""

    def __init__(self) -> None:
        self._items: dict[str, dict[str, Component]] = {kind: {} for kind in KINDS}

    def add(self, component: Component) -> None:
        if component.kind not in self._items:
            raise PluginError(f"unknown component kind {component.kind!r}; kinds: {', '.join(KINDS)}")
        if not isinstance(component.name, str) or not component.name:
            raise PluginError(f"{component.distribution} registered a {component.kind} with an empty or "
                              f"non-string name: {component.name!r}")
        existing = self._items[component.kind].get(component.name)
        if existing is not None:
            raise DuplicateComponentError(
                f"{component.kind} {component.name!r} is registered twice: by {existing.distribution} "
                f"{existing.version} ({existing.target}) and by {component.distribution} {component.version} "
                f"({component.target}); uninstall one, or set EMBER_PLUGINS to the ones you want")
        self._items[component.kind][component.name] = component

    def remove(self, kind: str, name: str) -> None:
        self._items[kind].pop(name, None)

    def names(self, kind: str) -> list[str]:
        return sorted(self._items[kind])

    def components(self, kind: str | None = None) -> list[Component]:
        kinds = [kind] if kind else list(KINDS)
        return [self._items[k][n] for k in kinds for n in sorted(self._items[k])]

    def __contains__(self, key: tuple[str, str]) -> bool:
        kind, name = key
        return name in self._items.get(kind, {})

    def get(self, kind: str, name: str) -> Component:
        """The component, or an UnknownComponentError that lists the near matches and everything registered."""
        try:
            return self._items[kind][name]
        except KeyError:
            raise UnknownComponentError(unknown_message(kind, name, self.names(kind))) from None

    def load(self, kind: str, name: str) -> Any:
        return self.get(kind, name).load()


def unknown_message(kind: str, name: str, known: list[str]) -> str:
    """`unknown model 'lama'; did you mean 'llama'? registered: ...`"""
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.75)
    close += [k for k in known if name.lower() in k.lower() and k not in close][:3]
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    listing = ", ".join(known) if known else "(none registered)"
    return f"unknown {kind.replace('_', ' ')} {name!r}{hint} registered: {listing}"
