"""The deployment files as data: docker-compose.yml (defaults interpolated) and the realm."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
REALM = ROOT / "deploy" / "keycloak" / "fhir-gateway-realm.json"
PREFIX = "FHIR_GATEWAY_"

_VARIABLE = re.compile(r"\$\{(\w+)(?::?[-?]([^}]*))?\}")


def _interpolate(value: Any) -> Any:
    """Compose's ``${NAME:-default}`` with the defaults (as with an empty environment)."""
    if isinstance(value, str):
        return _VARIABLE.sub(lambda m: m.group(2) or "", value)
    if isinstance(value, dict):
        return {k: _interpolate(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v) for v in value]
    return value


def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return dict(_interpolate(data))


def services() -> dict[str, dict[str, Any]]:
    return dict(compose()["services"])


def environment(service: str) -> dict[str, str]:
    env = services()[service].get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def realm() -> dict[str, Any]:
    data = json.loads(REALM.read_text())
    assert isinstance(data, dict)
    return data


def realm_client(client_id: str) -> dict[str, Any]:
    return next(c for c in realm()["clients"] if c["clientId"] == client_id)


def mappers(client: dict[str, Any], kind: str) -> list[dict[str, str]]:
    """The config of the client's protocol mappers of type ``kind``."""
    return [m["config"] for m in client.get("protocolMappers", []) if m["protocolMapper"] == kind]


def keycloak_issuer() -> str:
    """The ``iss`` of the realm's tokens: Keycloak's KC_HOSTNAME + /realms/<realm>."""
    return environment("keycloak")["KC_HOSTNAME"].rstrip("/") + "/realms/" + realm()["realm"]
