"""The Granite plugin registers through its entry point and matches transformers (ember's conformance kit)."""

import ember_model_granite
from ember.plugins.testing import check_architecture, check_distribution, check_plugin_registers


def test_registers():
    check_plugin_registers(ember_model_granite, {"model": ["GraniteForCausalLM"]})


def test_installed_entry_point_loads():
    check_distribution("ember-model-granite", {"model": ["GraniteForCausalLM"]})


def test_matches_transformers():
    check_architecture("GraniteForCausalLM")
