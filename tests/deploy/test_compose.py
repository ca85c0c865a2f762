"""docker-compose.yml (issue 10): valid for Compose, images pinned, every FHIR_GATEWAY_*
variable a real setting, and the services in the order operations need (migrate once, then
the replicas and the worker)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from fhir_gateway import __version__
from fhir_gateway.exports.worker import ExportWorker
from fhir_gateway.kit.worker_signals import STOP_MARGIN_SECONDS
from fhir_gateway.settings import Settings
from fhir_gateway.storage.database import Database
from fhir_gateway.subscriptions.worker import SubscriptionWorker
from tests.deploy.files import COMPOSE, PREFIX, REALM, ROOT, environment, services


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is not installed")
def test_docker_compose_accepts_the_file() -> None:
    result = subprocess.run(
        ["docker-compose", "-f", str(COMPOSE), "config", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_every_gateway_variable_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    fields = set(Settings.model_fields)
    used = 0
    for name in services():
        env = environment(name)
        for variable in env:
            if variable.startswith(PREFIX):
                used += 1
                assert variable.removeprefix(PREFIX).lower() in fields, f"{name}: {variable} is no setting"
        gateway_env = {k: v for k, v in env.items() if k.startswith(PREFIX)}
        if gateway_env:  # and their values are valid for the settings model
            for key in [k for k in os.environ if k.startswith(PREFIX)]:
                monkeypatch.delenv(key)
            for key, value in gateway_env.items():
                monkeypatch.setenv(key, value)
            settings = Settings()
            assert not settings.is_sqlite
    assert used >= 10


def test_images_are_pinned() -> None:
    for name, service in services().items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository, image
        assert re.fullmatch(r"\d+\.\d+(\.\d+)?(-[a-z]+)?", tag), f"{name}: {image} is not pinned"
    assert services()["gateway"]["image"] == f"fhir-gateway:{__version__}"
    base = re.search(r"^FROM (\S+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert base is not None
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", base.group(1)), base.group(1)


def test_migrations_run_once_before_the_replicas_and_the_worker() -> None:
    all_services = services()
    assert all_services["migrate"]["command"] == ["fhir-gateway", "migrate"]
    for name in ("gateway", "worker"):
        depends = all_services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
    gateway = all_services["gateway"]
    assert "--no-migrate" in gateway["command"]  # replicas never race to migrate
    assert gateway["deploy"]["replicas"] == 2
    assert "/health/ready" in " ".join(gateway["healthcheck"]["test"])
    assert environment("gateway")["FHIR_GATEWAY_SUBSCRIPTION_WORKER_IN_SERVE"] == "false"
    assert all_services["worker"]["command"] == ["fhir-gateway", "worker"]
    for name in ("migrate", "gateway", "worker"):  # one configuration for the whole deployment
        assert environment(name) == environment("gateway")


def test_the_worker_is_given_the_time_to_end_its_rounds_when_stopped(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``docker stop`` waits ``stop_grace_period`` after SIGTERM, then kills: longer than the
    worker's own bound on a stop (its loops' ``join_seconds`` and the margin), so that a worker
    whose stop hangs still writes its threads' stacks before it goes."""
    for key in [k for k in os.environ if k.startswith(PREFIX)]:
        monkeypatch.delenv(key)
    for key, value in environment("worker").items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    loops = [
        SubscriptionWorker(database, settings, audit_sink=lambda _: None),
        ExportWorker(database, settings, audit_sink=lambda _: None),
    ]
    needed = sum(loop.join_seconds for loop in loops)
    for loop in loops:
        loop.close()
    grace = re.fullmatch(r"(\d+)s", services()["worker"]["stop_grace_period"])
    assert grace is not None
    assert int(grace.group(1)) >= needed + STOP_MARGIN_SECONDS + 2  # and the process's own exit


def test_keycloak_imports_the_realm_file() -> None:
    keycloak = services()["keycloak"]
    assert "--import-realm" in keycloak["command"]
    mounts = [v.split(":") for v in keycloak["volumes"]]
    assert any(
        (ROOT / source).resolve() == REALM and target.startswith("/opt/keycloak/data/import/")
        for source, target, *_ in mounts
    )
    assert "SAAD_DOMICILE_CLIENT_SECRET" in environment("keycloak")  # the realm's ${...} placeholder
    assert "${SAAD_DOMICILE_CLIENT_SECRET}" in REALM.read_text()
