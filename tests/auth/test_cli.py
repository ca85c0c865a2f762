"""``fhir-gateway clients add|list|revoke`` through the real command (typer's runner)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from fhir_gateway.cli import _register_subcommands, app
from fhir_gateway.settings import get_settings
from fhir_gateway.storage.database import Database


@pytest.fixture
def cli_env(database: Database, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("FHIR_GATEWAY_DATABASE_URL", database.url)
    get_settings.cache_clear()
    _register_subcommands()
    yield CliRunner()
    get_settings.cache_clear()


def test_add_list_revoke(cli_env: CliRunner) -> None:
    added = cli_env.invoke(
        app,
        [
            "clients",
            "add",
            "saad-les-tilleuls",
            "--scope",
            "system/*.rs",
            "--secret",
            "pw",
            "--organization",
            "Organization/saad-1",
        ],
    )
    assert added.exit_code == 0, added.output
    listed = cli_env.invoke(app, ["clients", "list"])
    assert "saad-les-tilleuls\tactive\tOrganization/saad-1\tsecret\tsystem/*.rs" in listed.output
    revoked = cli_env.invoke(app, ["clients", "revoke", "saad-les-tilleuls"])
    assert revoked.exit_code == 0
    assert "saad-les-tilleuls\trevoked" in cli_env.invoke(app, ["clients", "list"]).output


def test_add_refuses_bad_requests(cli_env: CliRunner) -> None:
    both = cli_env.invoke(
        app,
        [
            "clients",
            "add",
            "x",
            "--scope",
            "system/*.rs",
            "--secret",
            "a",
            "--trusted",
            "--organization",
            "Organization/1",
        ],
    )
    assert both.exit_code == 2
    no_scope = cli_env.invoke(app, ["clients", "add", "y", "--scope", "openid", "--secret", "a", "--trusted"])
    assert no_scope.exit_code == 2
    unknown = cli_env.invoke(app, ["clients", "revoke", "nobody"])
    assert unknown.exit_code == 1
