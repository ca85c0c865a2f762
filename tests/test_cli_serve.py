"""``fhir-gateway serve`` start-up duties: production refuses each unsafe setting with a clear
message and exit status 2 (through the real command), development creates the demo client
once and prints how to get a token."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fhir_gateway.auth.bootstrap import (
    check_production_database,
    check_production_settings,
    ensure_demo_client,
)
from fhir_gateway.settings import Settings
from fhir_gateway.storage.database import Database
from fhir_gateway.storage.migrate import upgrade

BIN = Path(sys.executable).parent


SAFE = {
    "FHIR_GATEWAY_ENV": "production",
    "FHIR_GATEWAY_DATABASE_URL": "postgresql+psycopg://gateway:Long-Unique-Secret-42@127.0.0.1:1/gateway",
    "FHIR_GATEWAY_BASE_URL": "https://gateway.example",
    "FHIR_GATEWAY_TRUSTED_ISSUERS": "https://idp.example/realms/dac",
}


def _run(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``fhir-gateway COMMAND`` with ``env`` (a port nobody listens on: it must not start)."""
    args = [str(BIN / "fhir-gateway"), command, *(["--port", "1"] if command == "serve" else [])]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FHIR_GATEWAY_")}
    return subprocess.run(args, env={**clean, **env}, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize(
    ("unsafe", "message"),
    [
        pytest.param(
            {"FHIR_GATEWAY_DATABASE_URL": "sqlite:///{tmp}/prod.db"},
            "SQLite in production: set FHIR_GATEWAY_DATABASE_URL to PostgreSQL",
            id="sqlite",
        ),
        pytest.param(
            {"FHIR_GATEWAY_BASE_URL": "http://gateway.example"},
            "FHIR_GATEWAY_BASE_URL must be https:// in production, not 'http://gateway.example'",
            id="http-token-endpoint",
        ),
        pytest.param(
            {"FHIR_GATEWAY_BASE_URL": ""},  # unset: serve derives http://127.0.0.1:1
            "FHIR_GATEWAY_BASE_URL must be https:// in production, not 'http://127.0.0.1:1'",
            id="base-url-unset",
        ),
        pytest.param(
            {"FHIR_GATEWAY_TRUSTED_ISSUERS": "https://ok.example,http://keycloak:8080/realms/dac"},
            "FHIR_GATEWAY_TRUSTED_ISSUERS must all be https:// in production "
            "(their keys and token endpoints would travel in clear): http://keycloak:8080/realms/dac",
            id="http-issuer",
        ),
        pytest.param(
            {"FHIR_GATEWAY_DATABASE_URL": "postgresql+psycopg://gateway:change-me@db:5432/gateway"},
            "the database password in FHIR_GATEWAY_DATABASE_URL is the well-known default 'change-me'",
            id="default-database-password",
        ),
        pytest.param(
            {"FHIR_GATEWAY_DATABASE_URL": "postgresql+psycopg://gateway:gateway@db:5432/gateway"},
            "the database password in FHIR_GATEWAY_DATABASE_URL is the user name",
            id="password-is-user-name",
        ),
    ],
)
def test_production_refuses_each_unsafe_setting(unsafe: dict[str, str], message: str, tmp_path: Path) -> None:
    env = {**SAFE, **{k: v.format(tmp=tmp_path) for k, v in unsafe.items()}}
    env = {k: v for k, v in env.items() if v}
    result = _run("serve", env)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("refusing to start: ")]
    assert len(lines) == 1, result.stderr  # only the unsafe setting is named
    assert lines[0].startswith(f"refusing to start: {message}")
    assert "Long-Unique-Secret-42" not in result.stderr + result.stdout


def test_production_worker_refuses_unsafe_settings_too(tmp_path: Path) -> None:
    result = _run("worker", {**SAFE, "FHIR_GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'prod.db'}"})
    assert result.returncode == 2
    assert "refusing to start: SQLite in production" in result.stderr


def test_production_refuses_to_serve_the_development_demo_client(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'was-dev.db'}"
    database = Database(url)
    upgrade(database)
    assert ensure_demo_client(database, Settings(database_url=url)) is not None
    database.dispose()
    env = {**SAFE, "FHIR_GATEWAY_DATABASE_URL": url, "FHIR_GATEWAY_ALLOW_SQLITE_IN_PRODUCTION": "true"}
    result = _run("serve", env)
    assert result.returncode == 2
    assert (
        "refusing to start: the development demo client 'demo' (trusted, system/*.cruds) is still "
        "registered: revoke it with `fhir-gateway clients revoke demo`" in result.stderr
    )
    revoked = subprocess.run(
        [str(BIN / "fhir-gateway"), "clients", "revoke", "demo"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert revoked.returncode == 0, revoked.stderr
    database = Database(url)
    assert check_production_database(database) == []
    database.dispose()


def test_production_checks_pass_with_safe_settings() -> None:
    settings = Settings(
        env="production",
        database_url="postgresql+psycopg://gw:s3cret@db/gw",
        base_url="https://gateway.example",
        trusted_issuers="https://idp.example/realms/x",
    )
    assert check_production_settings(settings) == []


def test_demo_client_is_created_once_in_development_only(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'dev.db'}"
    database = Database(url)
    upgrade(database)
    created = ensure_demo_client(database, Settings(database_url=url))
    assert created is not None
    assert created[0] == "demo"
    assert ensure_demo_client(database, Settings(database_url=url)) is None
    assert ensure_demo_client(database, Settings(database_url=url, env="production")) is None
    database.dispose()
