"""``fhir-gateway serve`` start-up duties: production refuses unsafe settings, development
creates the demo client once and prints how to get a token."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from fhir_gateway.auth.bootstrap import check_production_settings, ensure_demo_client
from fhir_gateway.settings import Settings
from fhir_gateway.storage.database import Database
from fhir_gateway.storage.migrate import upgrade

BIN = Path(sys.executable).parent


def test_production_refuses_unsafe_settings(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "FHIR_GATEWAY_ENV": "production",
        "FHIR_GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'prod.db'}",
        "FHIR_GATEWAY_BASE_URL": "http://gateway.example",
    }
    result = subprocess.run(
        [str(BIN / "fhir-gateway"), "serve", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "SQLite in production" in result.stderr
    assert "https://" in result.stderr


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
