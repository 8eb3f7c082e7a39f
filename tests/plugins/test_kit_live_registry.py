"""The conformance kit over the live registry: every registered architecture (built-in or installed) passes it."""

from __future__ import annotations

import pytest

from ember.plugins import get_registry
from ember.plugins.testing import check_architecture


@pytest.mark.parametrize("architecture", get_registry().names("model"))
def test_architecture_passes_the_kit(architecture):
    check_architecture(architecture)
