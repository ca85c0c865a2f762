"""Grant and membership rows stored by ``storage.consent_repository`` (``bulk.insert_numbered``:
on PostgreSQL one statement of JSON rows): every value as given, a left-out column at its
default, serial keys numbered by the database, a second write replacing the first."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from fhir_gateway.storage.consent_repository import replace_grants, replace_members
from fhir_gateway.storage.consent_tables import careteam_member, consent_grant
from fhir_gateway.storage.database import Database

START, END = datetime(2026, 1, 1, 8, 30), datetime(2027, 6, 30, 23, 59, 59)
GRANT = {
    "consent_id": "c1", "patient_id": "p1", "path": "0", "effect": "permit", "actor": "Organization/saad",
    "res_class": "Task", "data_id": "t1", "purpose": "TREAT", "action": "read",
    "period_start": START, "period_end": None, "overridable": True,
}  # fmt: skip


def _rows(database: Database, table: Any, key: str) -> list[dict[str, Any]]:
    with database.transaction() as conn:
        return [dict(row._mapping) for row in conn.execute(select(table).order_by(table.c[key]))]


def test_grants_and_members_are_stored_as_given(consent_db: Database) -> None:
    bare = {k: v for k, v in GRANT.items() if k not in ("data_id", "overridable")}
    members = [
        {"careteam_ref": "CareTeam/ct1", "patient_id": "p1", "member": "Organization/saad"},
        {"careteam_ref": "CareTeam/ct1", "patient_id": None, "member": "Practitioner/x"},
    ]
    with consent_db.transaction(write=True) as conn:
        replace_grants(conn, "c1", [GRANT, {**GRANT, "path": "0.0", "period_end": END}], fresh=True)
        replace_grants(conn, "c2", [{**bare, "consent_id": "c2"}], fresh=True)  # columns left out
        replace_members(conn, "ct1", members, fresh=True)
    grants = _rows(consent_db, consent_grant, "grant_id")
    keys = [g.pop("grant_id") for g in grants]
    assert keys == sorted(set(keys))  # numbered by the database
    assert grants == [
        GRANT,
        {**GRANT, "path": "0.0", "period_end": END},
        {**bare, "consent_id": "c2", "data_id": "*", "overridable": False},
    ]
    stored = _rows(consent_db, careteam_member, "member_row")
    keys = [m.pop("member_row") for m in stored]
    assert keys == sorted(set(keys))
    assert stored == [{**m, "period_start": None, "period_end": None} for m in members]
    timed = [{**members[1], "period_start": START, "period_end": END}]
    with consent_db.transaction(write=True) as conn:
        replace_grants(conn, "c1", [{**GRANT, "effect": "deny", "overridable": False}])
        replace_members(conn, "ct1", timed)
    assert [
        (g["consent_id"], g["effect"], g["overridable"]) for g in _rows(consent_db, consent_grant, "grant_id")
    ] == [
        ("c2", "permit", False),
        ("c1", "deny", False),
    ]
    after = _rows(consent_db, careteam_member, "member_row")
    assert [{k: v for k, v in m.items() if k != "member_row"} for m in after] == timed
