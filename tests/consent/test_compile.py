"""Compiling Consents and CareTeams into rows (FHIR R4 consent.html, careteam.html)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fhir_gateway.consent.careteam import compile_careteam
from fhir_gateway.consent.compile import compile_consent
from fhir_gateway.consent.periods import period_bounds
from fhir_gateway.kit.errors import Unprocessable
from tests.consent.support import consent, provision

EXAMPLES = Path("/work/shared/fhir-examples")
CONSENTS = sorted(EXAMPLES.glob("consent-*.json"))


@pytest.mark.parametrize("path", CONSENTS, ids=[p.name for p in CONSENTS])
def test_hl7_examples_compile(path: Path) -> None:
    body = json.loads(path.read_text())
    rows = compile_consent(body["id"], body)
    for row in rows:
        assert row["effect"] in ("permit", "deny", "except")
        assert row["action"] in ("read", "write", "*")


def test_examples_found() -> None:
    if not EXAMPLES.exists():
        pytest.skip("no shared examples")
    assert len(CONSENTS) >= 10


def test_opt_out_root_without_type_denies() -> None:
    body = json.loads((EXAMPLES / "consent-example-Out.json").read_text())
    rows = compile_consent("out", body)
    assert {(r["effect"], r["actor"]) for r in rows} == {("deny", "Organization/f001")}


def test_unenforceable_permit_grants_nothing_and_deny_widens() -> None:
    labelled = {"securityLabel": [{"code": "PSY"}]}
    rows = compile_consent("c", consent("p", {**provision("permit", actors=["Organization/x"]), **labelled}))
    assert {r["effect"] for r in rows} == {"except"}
    rows = compile_consent("c", consent("p", {**provision("deny", classes=["Task"]), **labelled}))
    assert {(r["effect"], r["res_class"]) for r in rows} == {("deny", "*")}


def test_draft_and_non_privacy_consents_compile_to_nothing() -> None:
    assert compile_consent("c", consent("p", provision("permit"), status="draft")) == []
    other = {**consent("p", provision("permit")), "scope": {"coding": [{"code": "research"}]}}
    assert compile_consent("c", other) == []


def test_explosion_is_refused() -> None:
    many = provision(
        "permit",
        actors=[f"Organization/o{i}" for i in range(200)],
        classes=["Task", "Patient", "CarePlan"],
        purposes=[f"P{i}" for i in range(20)],
    )
    with pytest.raises(Unprocessable):
        compile_consent("c", consent("p", many))


def test_periods_with_day_precision_end_inclusive() -> None:
    start, end = period_bounds({"start": "2015-01-01", "end": "2015-02-01"})
    assert (start.isoformat(), end.isoformat()) == ("2015-01-01T00:00:00", "2015-02-02T00:00:00")  # type: ignore[union-attr]
    start, end = period_bounds({"start": "2016-06-23T17:02:33+10:00"})
    assert start is not None
    assert start.isoformat() == "2016-06-23T07:02:33"
    assert end is None


def test_careteam_members_and_on_behalf_of() -> None:
    body = json.loads((EXAMPLES / "careteam-example.json").read_text())
    rows = compile_careteam("example", body)  # status active; team period ended in 2013
    assert {r["member"] for r in rows} == {"Organization/f001"}
    assert all(r["period_end"] is not None and r["period_end"].year == 2013 for r in rows)
    assert compile_careteam("x", {**body, "status": "entered-in-error"}) == []


def test_a_period_ending_on_the_calendars_last_day_is_open_ended() -> None:
    """``9999-12-31``, the "no end" of many partner files: its exclusive end would be year 10000."""
    from fhir_gateway.consent.periods import period_bounds

    start, end = period_bounds({"start": "2024-02-01", "end": "9999-12-31"})
    assert (start is not None, end) == (True, None)
