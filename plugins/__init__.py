"""ember's plugin system: hookspecs, the plugin manager and the lazy component registries."""

from ember.plugins.hookspecs import hookimpl
from ember.plugins.manager import get_plugin_manager, get_registry, reset_plugin_manager
from ember.plugins.registry import (Component, DuplicateComponentError, PluginError, UnknownComponentError)

__all__ = ["hookimpl", "get_plugin_manager", "get_registry", "reset_plugin_manager", "Component",
           "DuplicateComponentError", "PluginError", "UnknownComponentError"]
