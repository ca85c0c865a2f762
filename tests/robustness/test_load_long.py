"""Ten minutes of mixed traffic from three partner organisations (issue 11, ``make test-long``).

A live ``fhir-gateway serve`` on PostgreSQL; three partners whose sight of 60 people is set by
Consents and CareTeams (permit, deny, care-team opt-out). Each partner reads, searches, pages,
includes and writes; every answer is checked against the set of people that partner may see.
Zero errors, zero leaks, memory stable. ``FHIR_GATEWAY_LOAD_SECONDS`` shortens the run.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.consent.support import careteam, consent, provision
from tests.e2e.conftest import LiveServer, running_gateway
from tests.support.databases import engine_kind

pytestmark = [
    pytest.mark.long,
    pytest.mark.skipif(engine_kind() != "postgresql", reason="the load test runs on PostgreSQL"),
]
FHIR = "application/fhir+json"
PEOPLE = 60
ORGS = {"A": "Organization/saad", "B": "Organization/dac", "C": "Organization/esms"}


def _visible_to(org: str, k: int) -> bool:
    """The expected decision (care-team-opt-out policy) for person ``k``."""
    kind = k % 3
    if kind == 0:  # a Consent permits the SAAD, denies the DAC; others are outside the team
        return org == "A"
    if kind == 1:  # the DAC is in the care team, no Consent: opt-out policy lets it see
        return org == "B"
    return org in ("A", "B")  # all three in the team, but this person refused the ESMS


def _seed(server: LiveServer, token: str) -> None:
    entries: list[dict[str, Any]] = []

    def put(resource: dict[str, Any]) -> None:
        url = f"{resource['resourceType']}/{resource['id']}"
        entries.append({"resource": resource, "request": {"method": "PUT", "url": url}})

    for k in range(PEOPLE):
        pid = f"p{k}"
        put({"resourceType": "Patient", "id": pid, "name": [{"family": f"Nom{k}"}]})
        for t in range(3):
            put({"resourceType": "Task", "id": f"{pid}-t{t}", "status": "requested", "intent": "order",
                 "for": {"reference": f"Patient/{pid}"}})  # fmt: skip
        plan = {"resourceType": "CarePlan", "id": f"{pid}-plan", "status": "active", "intent": "plan"}
        put(
            {
                **plan,
                "subject": {"reference": f"Patient/{pid}"},
                "careTeam": [{"reference": f"CareTeam/{pid}-team"}],
            }
        )
        members = {0: [], 1: [ORGS["B"]], 2: list(ORGS.values())}[k % 3]
        put({**careteam(pid, [(m, None, None) for m in members]), "id": f"{pid}-team"})
        if k % 3 == 0:
            put({**consent(pid, provision("permit", actors=[ORGS["A"]])), "id": f"{pid}-c1"})
            put({**consent(pid, provision("deny", actors=[ORGS["B"]])), "id": f"{pid}-c2"})
        if k % 3 == 2:
            put({**consent(pid, provision("deny", actors=[ORGS["C"]])), "id": f"{pid}-c3"})
    headers = {"Authorization": f"Bearer {token}", "Content-Type": FHIR}
    for i in range(0, len(entries), 200):
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries[i : i + 200]}
        answer = httpx.post(server.fhir, json=bundle, headers=headers, timeout=120)
        assert answer.status_code == 200, answer.text[:500]


def _token(server: LiveServer, name: str, *actor: str) -> str:
    result = server.cli(
        "clients", "add", name, "--scope", "system/*.cruds", "--secret", "s3cret-load", *actor
    )
    assert result.returncode == 0, result.stderr
    answer = httpx.post(server.base_url + "/auth/token", data={"grant_type": "client_credentials"},
                        auth=(name, "s3cret-load"))  # fmt: skip
    return str(answer.json()["access_token"])


class Partner(threading.Thread):
    """One organisation's software: a random mix of interactions, each answer checked."""

    def __init__(self, server: LiveServer, org: str, seconds: float) -> None:
        super().__init__(name=f"partner-{org}")
        self.server, self.org, self.seconds = server, org, seconds
        self.name = f"partner-{org}"
        secret = ("--secret", "s3cret-load")
        result = server.cli(
            "clients", "add", self.name, "--scope", "system/*.cruds", *secret, "--organization", ORGS[org]
        )
        assert result.returncode == 0, result.stderr
        self.counts = {"requests": 0, "errors": 0, "leaks": 0}
        self.problems: list[str] = []
        self.visible = {k for k in range(PEOPLE) if _visible_to(org, k)}

    def _check(self, ok: bool, what: str) -> None:
        if not ok:
            self.counts["leaks"] += 1
            self.problems.append(what)

    def _fresh_token(self, client: httpx.Client) -> float:
        """A new access token (they live 5 minutes, like a partner's backend would renew them)."""
        answer = httpx.post(self.server.base_url + "/auth/token", data={"grant_type": "client_credentials"},
                            auth=(self.name, "s3cret-load"))  # fmt: skip
        client.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"
        return time.monotonic() + 120

    def run(self) -> None:
        deadline = time.monotonic() + self.seconds
        rng = random.Random(self.org)
        with httpx.Client(base_url=self.server.fhir, headers={"Content-Type": FHIR}, timeout=30) as client:
            renew_at = self._fresh_token(client)
            while time.monotonic() < deadline:
                if time.monotonic() > renew_at:
                    renew_at = self._fresh_token(client)
                k = rng.randrange(PEOPLE)
                seen = k in self.visible
                action = rng.random()
                try:
                    if action < 0.3:
                        status = client.get(f"/Patient/p{k}").status_code
                        self._check(status == (200 if seen else 404), f"read p{k} -> {status}")
                    elif action < 0.6:
                        total = client.get("/Task", params={"patient": f"Patient/p{k}"}).json()["total"]
                        self._check(total == (3 if seen else 0), f"Task?patient=p{k} -> {total}")
                    elif action < 0.75:
                        ids = self._page_all(client)
                        expected = {f"p{v}-t{t}" for v in self.visible for t in range(3)}
                        self._check(ids == expected, f"paged Tasks: {len(ids)} vs {len(expected)}")
                    elif action < 0.9:
                        query = {"subject": f"Patient/p{k}", "_include": "CarePlan:care-team"}
                        bundle = client.get("/CarePlan", params=query).json()
                        found = {e["resource"]["id"] for e in bundle.get("entry", [])}
                        self._check(
                            found == ({f"p{k}-plan", f"p{k}-team"} if seen else set()), f"include p{k}"
                        )
                    else:
                        goal = {
                            "resourceType": "Goal",
                            "lifecycleStatus": "active",
                            "description": {"text": "à domicile"},
                        }
                        goal["subject"] = {"reference": f"Patient/p{k}"}
                        status = client.post("/Goal", json=goal).status_code
                        self._check(status == 201 if seen else status == 403, f"write Goal p{k} -> {status}")
                    self.counts["requests"] += 1
                except (httpx.HTTPError, KeyError, ValueError) as exc:
                    self.counts["errors"] += 1
                    self.problems.append(f"{type(exc).__name__}: {exc}")

    @staticmethod
    def _page_all(client: httpx.Client) -> set[str]:
        ids: set[str] = set()
        url: str | None = "/Task?_count=50"
        while url:
            bundle = client.get(url).json()
            ids |= {e["resource"]["id"] for e in bundle.get("entry", [])}
            url = next((link["url"] for link in bundle.get("link", []) if link["relation"] == "next"), None)
        return ids


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_three_partners_ten_minutes_no_error_no_leak_memory_stable(tmp_path: Path) -> None:
    seconds = float(os.environ.get("FHIR_GATEWAY_LOAD_SECONDS", "600"))
    with running_gateway(tmp_path) as server:
        trusted = _token(server, "platform", "--trusted")
        _seed(server, trusted)
        pid = int(next(p for p in os.listdir("/proc") if p.isdigit() and _is_gateway(p, server)))
        partners = [Partner(server, org, seconds) for org in ORGS]
        started = time.monotonic()
        for partner in partners:
            partner.start()
        samples: list[tuple[float, float]] = []
        while any(p.is_alive() for p in partners):
            samples.append((round(time.monotonic() - started), round(_rss_mib(pid), 1)))
            time.sleep(min(10.0, seconds / 10))
        for partner in partners:
            partner.join()
    warm = [rss for t, rss in samples if t >= min(60.0, seconds / 3)] or [s[1] for s in samples]
    summary = {
        "seconds": seconds,
        "partners": {p.org: p.counts for p in partners},
        "requests_per_second": round(sum(p.counts["requests"] for p in partners) / seconds, 1),
        "rss_mib": {
            "first": samples[0][1],
            "after_warmup": warm[0],
            "max": max(warm),
            "last": samples[-1][1],
        },
        "rss_curve": samples,  # (seconds, MiB): a leak climbs to the end, a warm-up levels off
    }
    print(json.dumps(summary))
    (tmp_path / "load.json").write_text(json.dumps(summary))
    for partner in partners:
        assert partner.counts["errors"] == 0, partner.problems[:5]
        assert partner.counts["leaks"] == 0, partner.problems[:5]
    assert max(warm) - warm[0] < 50, summary  # no growth once warm (MiB)


def _is_gateway(pid: str, server: LiveServer) -> bool:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return "fhir-gateway serve" in command and server.base_url.rsplit(":", 1)[1] in command
