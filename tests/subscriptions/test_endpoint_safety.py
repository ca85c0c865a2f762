"""No server-side request forgery through Subscription endpoints (issue 7)."""

from __future__ import annotations

import httpx
import pytest
import respx
from starlette.testclient import TestClient

from fhir_gateway.settings import Settings
from fhir_gateway.storage.database import Database
from fhir_gateway.subscriptions.endpoint_safety import UnsafeEndpoint, check_before_delivery
from tests.subscriptions.support import FHIR, drain, make_worker, subscribe, subscription_body


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://127.0.0.1:5432/",
        "http://localhost/hook",
        "https://10.0.0.7/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/hook",
        "https://user:pw@hooks.example/",
        "ftp://hooks.example/",
    ],
)
def test_unsafe_endpoints_are_refused_when_subscribing(fhir: TestClient, endpoint: str) -> None:
    answer = fhir.post(
        "/fhir/Subscription",
        json=subscription_body("Task?status=requested", endpoint=endpoint),
        headers={"Content-Type": FHIR},
    )
    assert answer.status_code == 422, answer.text
    issue = answer.json()["issue"][0]
    assert issue["expression"] == ["Subscription.channel.endpoint"]


def test_production_mode_wants_https(settings: Settings) -> None:
    with pytest.raises(UnsafeEndpoint, match="https"):
        check_before_delivery(
            "http://hooks.example/", production=True, allow_private=False, resolve=lambda h: []
        )


def test_a_host_that_resolves_to_a_private_address_is_not_called(
    fhir: TestClient, database: Database, settings: Settings
) -> None:
    sub = subscribe(fhir, "Task?status=requested", endpoint="https://intranet.example/hook")
    rebinding = make_worker(database, settings, resolve=lambda host: ["10.1.2.3"])
    with respx.mock(assert_all_called=False) as network:
        route = network.route().mock(return_value=httpx.Response(200))
        drain(rebinding)
    rebinding.stop()
    assert route.call_count == 0
    stored = fhir.get(f"/fhir/Subscription/{sub['id']}").json()
    assert stored["status"] == "error"
    assert "non-public address" in stored["error"]


def test_private_endpoints_can_be_allowed_by_the_deployment(database: Database) -> None:
    allowed = Settings(database_url=database.url, subscription_allow_private_endpoints=True)
    check_before_delivery(
        "http://10.0.0.7/hook",
        production=False,
        allow_private=allowed.subscription_allow_private_endpoints,
        resolve=lambda h: [],
    )


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"criteria": "Basic?code=x"}, "Subscription.criteria"),
        ({"criteria": "Task?nonsense=1"}, "Subscription.criteria"),
        ({"criteria": "Task?_count=5"}, "Subscription.criteria"),
        ({"channel": {"type": "websocket", "endpoint": "wss://x.example"}}, "Subscription.channel.type"),
        (
            {"channel": {"type": "rest-hook", "endpoint": "https://x.example", "payload": "text/csv"}},
            "Subscription.channel.payload",
        ),
        (
            {"channel": {"type": "rest-hook", "endpoint": "https://x.example", "header": ["Host: evil"]}},
            "Subscription.channel.header[0]",
        ),
    ],
)
def test_bad_subscriptions_are_refused_naming_the_element(
    fhir: TestClient, change: dict[str, object], where: str
) -> None:
    body = {**subscription_body("Task?status=requested"), **change}
    answer = fhir.post("/fhir/Subscription", json=body, headers={"Content-Type": FHIR})
    assert answer.status_code == 422, answer.text
    assert answer.json()["issue"][0]["expression"] == [where]
