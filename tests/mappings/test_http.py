"""``$import-partner`` and ``$export-partner`` over HTTP with real tokens (issue 5): scopes,
the caller's organisation and the persons' consent apply; problems come back as an
OperationOutcome naming line, column, value and reason, with the counts."""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient

from fhir_gateway.storage.database import Database
from tests.conftest import ClientFactory
from tests.consent.support import consent, provision
from tests.mappings.conftest import DC, MDPH_CLIENT_ORG, SAAD, SAMPLES, stored, versions
from tests.support.metrics import metric

CSV = {"Content-Type": "text/csv"}
FHIR = {"Content-Type": "application/fhir+json"}


def _import(client: TestClient, fmt: str, data: bytes, **params: str) -> tuple[int, dict[str, Any]]:
    response = client.post(
        "/fhir/$import-partner", params={"format": fmt, **params}, content=data, headers=CSV
    )
    return response.status_code, response.json()


def _counts(outcome: dict[str, Any]) -> dict[str, int]:
    return {e["url"].rsplit(":", 1)[-1]: e["valueInteger"] for e in outcome.get("extension", [])}


def _setup(fhir: TestClient) -> None:
    status, outcome = _import(
        fhir, "saad-beneficiaires", (SAMPLES / "saad-beneficiaires.csv").read_bytes(), organization=SAAD
    )
    assert status == 200, outcome
    assert _counts(outcome)["created"] == 6


def test_partner_imports_and_exports_its_visits(
    fhir: TestClient, make_client: ClientFactory, organizations: None, database: Database
) -> None:
    _setup(fhir)
    saad = make_client("system/Task.cruds system/Patient.rs system/CareTeam.rs", organization=SAAD)
    sample = (SAMPLES / "saad-interventions.csv").read_bytes()
    status, outcome = _import(saad, "saad-interventions", sample)  # organization: the client's own
    assert status == 200, outcome
    assert _counts(outcome) == {"rows": 5, "created": 7, "updated": 0, "unchanged": 0, "rejected": 0}
    before = versions(database)
    status, outcome = _import(saad, "saad-interventions", sample)
    assert _counts(outcome)["unchanged"] == 7
    assert versions(database) == before
    exported = saad.get("/fhir/$export-partner", params={"format": "saad-interventions"})
    assert exported.status_code == 200
    assert exported.headers["content-type"] == "text/csv; charset=cp1252"
    assert exported.content == sample


def test_problems_are_named_and_nothing_is_written(
    fhir: TestClient, organizations: None, database: Database
) -> None:
    _setup(fhir)
    before = versions(database)
    head = (SAMPLES / "saad-interventions.csv").read_bytes().splitlines()[0]
    bad = head + b"\r\nINT-1;B0101;31/02/2025;08:00;09:00;;;AV-017;Toilette;Planifi\xe9e;;;;;\r\n"
    bad += b"INT-2;B0101;18/11/2025;08:00;09:00;;;AV-017;Toilette;Planifi\xe9e;;;;;\r\n"
    status, outcome = _import(fhir, "saad-interventions", bad, organization=SAAD)
    assert status == 422
    errors = [i for i in outcome["issue"] if i["severity"] == "error"]
    assert [e["diagnostics"] for e in errors] == [
        "line 2, column 'Date', value '31/02/2025': not a valid date (JJ/MM/AAAA)"
    ]
    assert errors[0]["expression"] == ["line[2].Date"]
    assert _counts(outcome) == {"rows": 2, "created": 0, "updated": 0, "unchanged": 0, "rejected": 1}
    assert versions(database) == before
    status, outcome = _import(fhir, "saad-interventions", bad, organization=SAAD, partial="true")
    assert status == 200
    assert _counts(outcome)["created"] == 1
    assert _counts(outcome)["rejected"] == 1
    status, outcome = _import(
        fhir, "saad-interventions", head.replace(b";Statut", b"") + b"\r\n", organization=SAAD
    )
    assert status == 422
    assert "required column missing" in outcome["issue"][0]["diagnostics"]


def test_dry_run_and_usage_errors(fhir: TestClient, organizations: None, database: Database) -> None:
    data = (SAMPLES / "saad-beneficiaires.csv").read_bytes()
    status, outcome = _import(fhir, "saad-beneficiaires", data, organization=SAAD, **{"dry-run": "true"})
    assert status == 200
    assert _counts(outcome)["created"] == 6
    assert stored(database, "Patient") == []
    assert _import(fhir, "nope", data, organization=SAAD)[0] == 400
    assert _import(fhir, "saad-beneficiaires", data, organization="Organization/unknown")[0] == 404
    assert _import(fhir, "saad-beneficiaires", data)[0] == 400  # a trusted client without organisation
    wrong_type = fhir.post(
        "/fhir/$import-partner?format=saad-beneficiaires",
        content=data,
        headers={"Content-Type": "application/pdf"},
    )
    assert wrong_type.status_code == 415


def test_consent_and_organisation_apply(
    fhir: TestClient, make_client: ClientFactory, organizations: None, database: Database
) -> None:
    _setup(fhir)
    other = make_client("system/*.cruds", organization=DC)
    sample = (SAMPLES / "saad-interventions.csv").read_bytes()
    assert _import(other, "saad-interventions", sample, organization=SAAD)[0] == 403  # not its organisation
    assert (
        other.get(
            "/fhir/$export-partner", params={"format": "saad-interventions", "organization": SAAD}
        ).status_code
        == 403
    )
    # a partner outside the person's circle of care cannot create or change their data
    status, outcome = _import(other, "saad-beneficiaires", (SAMPLES / "saad-beneficiaires.csv").read_bytes())
    assert status == 422
    reasons = {i["diagnostics"] for i in outcome["issue"] if i["severity"] == "error"}
    assert all("consent" in r.lower() for r in reasons), reasons
    scoped = make_client("system/Patient.rs", organization=SAAD)
    status, outcome = _import(scoped, "saad-interventions", sample)
    assert status == 422
    assert "scopes do not allow" in outcome["issue"][0]["diagnostics"]
    assert scoped.get("/fhir/$export-partner", params={"format": "saad-interventions"}).status_code == 403


def test_imported_rows_are_counted_in_metrics(fhir: TestClient, organizations: None) -> None:
    def rows(outcome: str) -> float:
        return metric(fhir, "fhir_import_rows_total", format="saad-interventions", outcome=outcome)

    _setup(fhir)
    before = {o: rows(o) for o in ("imported", "rejected", "refused", "dry-run")}
    head = (SAMPLES / "saad-interventions.csv").read_bytes().splitlines()[0]
    good = b"INT-2;B0101;18/11/2025;08:00;09:00;;;AV-017;Toilette;Planifi\xe9e;;;;;\r\n"
    bad = b"INT-1;B0101;31/02/2025;08:00;09:00;;;AV-017;Toilette;Planifi\xe9e;;;;;\r\n"
    data = head + b"\r\n" + bad + good
    assert _import(fhir, "saad-interventions", data, organization=SAAD)[0] == 422
    assert _import(fhir, "saad-interventions", data, organization=SAAD, partial="true")[0] == 200
    assert (
        _import(fhir, "saad-interventions", head + b"\r\n" + good, organization=SAAD, **{"dry-run": "true"})[
            0
        ]
        == 200
    )
    after = {o: rows(o) for o in before}
    assert {o: after[o] - before[o] for o in after} == {
        "imported": 1,
        "rejected": 1,
        "refused": 2,
        "dry-run": 1,
    }


def test_a_partner_import_writes_only_organisations_it_owns(
    fhir: TestClient, make_client: ClientFactory, organizations: None
) -> None:
    """Issue 4 (consent.ownership): a partner MDPH's decisions name the structures persons are
    oriented to; those known are bound as they are, an unknown one is not created by the partner."""
    sample = (SAMPLES / "mdph-decisions.csv").read_bytes()
    assert _import(fhir, "mdph-decisions", sample, organization=MDPH_CLIENT_ORG)[0] == 200
    people = fhir.get("/fhir/Patient", params={"_count": "100"}).json()["entry"]
    for n, entry in enumerate(people):
        permit = consent(entry["resource"]["id"], provision("permit", actors=[MDPH_CLIENT_ORG]))
        assert (
            fhir.put(f"/fhir/Consent/c{n}", json={**permit, "id": f"c{n}"}, headers=FHIR).status_code == 201
        )
    mdph = make_client("system/*.cruds", organization=MDPH_CLIENT_ORG)
    status, outcome = _import(mdph, "mdph-decisions", sample)
    assert status == 200, outcome  # nothing changes: the structures are read, not written
    assert _counts(outcome)["unchanged"] > 0
    header, first = sample.decode("utf-8").splitlines()[:2]
    unknown = first.replace(";420002345;", ";420009999;")
    assert unknown != first
    status, outcome = _import(mdph, "mdph-decisions", f"{header}\r\n{unknown}\r\n".encode())
    assert status == 422
    errors = [i["diagnostics"] for i in outcome["issue"] if i["severity"] == "error"]
    assert len(errors) == 1
    assert "neither this client's Organization nor part of it" in errors[0], errors
    finess = "urn:oid:1.2.250.1.71.4.2.2|420009999"
    assert fhir.get("/fhir/Organization", params={"identifier": finess}).json()["total"] == 0


def test_a_partner_export_is_audited_once_per_person_in_the_file(
    fhir: TestClient, make_client: ClientFactory, organizations: None, database: Database
) -> None:
    """The export answers many persons' data: one AuditEvent per person whose visits are in
    the file, each naming that person (``Ctx.audit_people``), so each finds it in their trail."""
    _setup(fhir)
    saad = make_client("system/Task.cruds system/Patient.rs system/CareTeam.rs", organization=SAAD)
    status, outcome = _import(saad, "saad-interventions", (SAMPLES / "saad-interventions.csv").read_bytes())
    assert status == 200, outcome
    assert saad.get("/fhir/$export-partner", params={"format": "saad-interventions"}).status_code == 200
    events = fhir.get("/fhir/AuditEvent", params={"agent": SAAD, "subtype": "search-type", "_count": "100"})
    exports = [e["resource"] for e in events.json().get("entry", [])]
    persons = [
        [x["what"]["reference"] for x in e["entity"] if x.get("role", {}).get("code") == "1"] for e in exports
    ]
    visited = {
        t["for"]["reference"] for t in stored(database, "Task") if t.get("owner") == {"reference": SAAD}
    }
    assert len(visited) == 2
    assert sorted(p for named in persons for p in named) == sorted(visited)  # one event each
