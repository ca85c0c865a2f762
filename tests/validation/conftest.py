"""Fixtures of the mapping tests, for checking their output against the profiles (when the
mapping engine of issue 5 is present)."""

from __future__ import annotations

try:
    from tests.mappings.conftest import cli, organizations  # noqa: F401
except ImportError:  # the mapping engine is not merged on this branch
    pass
