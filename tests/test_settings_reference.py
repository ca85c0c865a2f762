"""The README's configuration reference is the settings model's (issue 10)."""

from __future__ import annotations

from fhir_gateway.settings import Settings
from fhir_gateway.settings_reference import README, main, markdown_table


def test_every_setting_is_in_the_table() -> None:
    table = markdown_table()
    for name in Settings.model_fields:
        assert f"`FHIR_GATEWAY_{name.upper()}`" in table


def test_the_readme_table_is_current() -> None:
    assert main(["--check"]) == 0, "run: python -m fhir_gateway.settings_reference"
    assert markdown_table() in README.read_text(encoding="utf-8")
