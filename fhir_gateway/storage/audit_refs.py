"""AuditEvents' reference and date parameters as columns of their ``audit_terms`` row (PostgreSQL).

Every request writes an AuditEvent (FHIR R4 auditevent.html#6.4.4.1). In the generic index its
references (``agent``, ``entity``, ``patient``, ``source``: auditevent.html#search) were four or
more ``idx_reference`` rows and its ``date`` (``recorded``) one ``idx_date`` row: five heap rows
and eleven B-tree entries per event, a fifth of what a read cost PostgreSQL. On PostgreSQL they
are now part of the event's one ``audit_terms`` row (docs/audit-store.md, step 2):

- ``refs``: one key per reference index row, ``param|Type/id`` for a reference that names a
  resource, ``param|url`` for an absolute or unparsed one (both for an absolute URL that names a
  resource, as the generic row holds both), ``param|`` + ``NO_ID`` for a reference without an id;
  the keys joined by ``SEP``, under a GIN index of ``string_to_array(refs, SEP)`` (array
  containment: ``search.compiler``), whose pending list takes an event's keys in one append;
- ``recorded_low``, ``recorded_high``: the ``date`` row's range, under two B-tree indexes.

``with_audit_refs`` moves those rows of any AuditEvent (the audit writer's, a trusted client's,
an import's) into its ``audit_terms`` row as every write reaches ``storage.bulk`` on PostgreSQL,
so that no AuditEvent there has ``idx_reference`` or ``idx_date`` rows and a search reads one
place (migration 0013 moved the rows already stored). SQLite keeps the generic rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

from fhir_gateway.storage.tables import audit_terms, idx_date, idx_reference

AUDIT_EVENT = "AuditEvent"
SEP = "\x1f"  # between keys: no reference the gateway stores holds it (``key_text`` drops it)
NO_ID = "\x1e"  # the key of a reference without an id (``target_id`` NULL in the generic row)
DATE_PARAM = "date"  # auditevent.html#search: ``recorded``

Part = tuple[Any, Sequence[Sequence[Any]]]


def key_text(value: str) -> str:
    """``value`` as it may appear in a key (without the separator; queries do the same)."""
    return value.replace(SEP, "")


@lru_cache(maxsize=4096)
def reference_keys(
    param: str, target_type: str | None, target_id: str | None, url: str | None
) -> tuple[str, ...]:
    """The keys of one reference index row (``search.indexing`` ``reference`` row); the events of
    a batch name the same people, organisations and clients again and again."""
    keys: list[str] = []
    if target_id is None:
        if target_type is None:
            keys.append(f"{param}|{NO_ID}")
    elif target_type is not None:
        keys.append(key_text(f"{param}|{target_type}/{target_id}"))
    if url is not None:
        keys.append(key_text(f"{param}|{url}"))
    return tuple(keys)


def with_audit_refs(parts: Sequence[Part]) -> Sequence[Part]:
    """``parts`` (a write's rows per table, ``storage.bulk``) with the AuditEvents' reference
    rows and ``date`` rows turned into the ``refs`` and ``recorded_*`` columns of their
    ``audit_terms`` row (one made, without terms, for an event that has none, where its index
    rows were: the last part stays last). Other rows, and parts holding no AuditEvent's rows,
    are left as they are; ``parts`` is not changed."""
    moved: dict[str, list[Any]] = {}  # res_id -> [keys, low, high]
    kept: list[Part] = []
    first_moved = -1
    for table, rows in parts:
        if table is idx_reference and _has_audit_rows(rows):
            rows = _moved_references(rows, moved)
        elif table is idx_date and _has_audit_rows(rows):
            rows = _moved_dates(rows, moved)
        else:
            kept.append((table, rows))
            continue
        if first_moved < 0:
            first_moved = len(kept)
        kept.append((table, rows))
    if not moved:
        return parts
    out: list[Part] = []
    for table, rows in kept:
        if table is audit_terms:
            rows = [_filled(row, moved.pop(row[0], None)) for row in rows]
        out.append((table, rows))
    if moved:
        made = [_filled((res_id, "[]", None, None, None), found) for res_id, found in moved.items()]
        out.insert(first_moved, (audit_terms, made))
    return out


def audit_terms_row(res_id: str, terms: str, keys: list[str], low: Any, high: Any) -> Sequence[Any]:
    """The ``audit_terms`` row of an AuditEvent with ``terms`` that ``with_audit_refs`` makes from
    its ``reference`` and ``date`` index rows, made from their keys and range directly
    (``audit.store``: the events of a kind whose terms are known)."""
    return _filled((res_id, terms, None, None, None), [keys, low, high])


def _has_audit_rows(rows: Iterable[Sequence[Any]]) -> bool:
    return any(row[0] == AUDIT_EVENT for row in rows)


def _moved_references(rows: Sequence[Sequence[Any]], moved: dict[str, list[Any]]) -> list[Sequence[Any]]:
    left = []
    for row in rows:
        if row[0] != AUDIT_EVENT:
            left.append(row)
            continue
        _, res_id, param, target_type, target_id, url = row
        found = moved.setdefault(res_id, [[], None, None])
        found[0].extend(reference_keys(param, target_type, target_id, url))
    return left


def _moved_dates(rows: Sequence[Sequence[Any]], moved: dict[str, list[Any]]) -> list[Sequence[Any]]:
    left = []
    for row in rows:
        _, res_id, param, low, high = row
        if row[0] != AUDIT_EVENT or param != DATE_PARAM:
            left.append(row)
            continue
        found = moved.setdefault(res_id, [[], None, None])
        found[1] = low if found[1] is None or (low is not None and low < found[1]) else found[1]
        found[2] = high if found[2] is None or (high is not None and high > found[2]) else found[2]
    return left


def _filled(row: Sequence[Any], found: list[Any] | None) -> Sequence[Any]:
    """An ``audit_terms`` row (res_id, terms, refs, recorded_low, recorded_high) with ``found``."""
    if found is None:
        return row
    keys, low, high = found
    return (row[0], row[1], SEP.join(dict.fromkeys(keys)) if keys else None, low, high)
