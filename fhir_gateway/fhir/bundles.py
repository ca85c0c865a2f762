"""Batch and transaction Bundles (FHIR R4 http.html#transaction, bundle.html#transaction).

A transaction runs every entry in one database transaction: DELETE, then POST, then
PUT/PATCH, then GET (http.html#trules); placeholder ids are assigned first and references
rewritten; any failing entry rolls everything back and its OperationOutcome is the answer.
Its creates without ``ifNoneExist`` are checked one by one, as a single create is, and stored
together (``fhir.write_batch``: a few statements instead of two per entry); any other entry
stores them first, so that it sees them.
A batch runs each entry in its own transaction; each gets its own status.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fhir_gateway.audit.grouped import transaction_writes
from fhir_gateway.fhir import reads, searching, writes
from fhir_gateway.fhir.bundle_refs import rewrite_references
from fhir_gateway.fhir.conditional import find_matches
from fhir_gateway.fhir.context import Ctx
from fhir_gateway.fhir.requests import parse_if_match
from fhir_gateway.fhir.resource_types import require_stored_type
from fhir_gateway.fhir.write_batch import WriteBatch
from fhir_gateway.kit import jsonutil
from fhir_gateway.kit.errors import BadRequest, FhirError, Issue, PayloadTooLarge, PreconditionFailed
from fhir_gateway.kit.ids import new_id as make_id
from fhir_gateway.kit.timeutil import fhir_instant
from fhir_gateway.storage.repository import StoredRow

_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}


@dataclass
class EntryRequest:
    """One checked ``Bundle.entry``: its index, method, URL parts and resource."""

    index: int
    method: str
    url: str
    res_type: str
    res_id: str | None
    query: str
    resource: dict[str, Any] | None
    full_url: str | None
    headers: dict[str, str]
    assigned_id: str | None = None


def _entry_error(index: int, message: str) -> BadRequest:
    return BadRequest(f"Bundle.entry[{index}]: {message}", expression=[f"Bundle.entry[{index}]"])


def parse_entries(bundle: dict[str, Any], max_entries: int) -> tuple[str, list[EntryRequest]]:
    """The Bundle's type and its entries, checked; 400 naming the faulty entry."""
    if bundle.get("resourceType") != "Bundle":
        raise BadRequest("POST to the base URL takes a Bundle", expression=["resourceType"])
    kind = bundle.get("type")
    if kind not in ("batch", "transaction"):
        raise BadRequest("Bundle.type must be batch or transaction", expression=["Bundle.type"])
    raw_entries = bundle.get("entry") or []
    if not isinstance(raw_entries, list):
        raise BadRequest("Bundle.entry must be an array", expression=["Bundle.entry"])
    if len(raw_entries) > max_entries:
        raise PayloadTooLarge(f"The Bundle has {len(raw_entries)} entries; the limit is {max_entries}")
    return kind, [_parse_entry(i, e) for i, e in enumerate(raw_entries)]


def _parse_entry(index: int, entry: Any) -> EntryRequest:
    if not isinstance(entry, dict) or not isinstance(entry.get("request"), dict):
        raise _entry_error(index, "every entry needs a request (method and url)")
    request = entry["request"]
    method = str(request.get("method", "")).upper()
    if method not in _ORDER:
        raise _entry_error(index, f"request.method '{method}' is not supported")
    url = str(request.get("url", ""))
    parts = urlsplit(url)
    path = parts.path.strip("/")
    segments = path.split("/") if path else []
    if not segments:
        raise _entry_error(index, f"request.url '{url[:80]}' names no resource type")
    res_type = segments[0]
    try:
        require_stored_type(res_type)
    except FhirError:
        raise _entry_error(index, f"resource type '{res_type[:40]}' is not supported") from None
    resource = entry.get("resource")
    if method in ("POST", "PUT") and not isinstance(resource, dict):
        raise _entry_error(index, f"{method} needs a resource")
    headers = {k: str(request[k]) for k in ("ifNoneExist", "ifMatch", "ifNoneMatch") if request.get(k)}
    return EntryRequest(
        index,
        method,
        url,
        res_type,
        "/".join(segments[1:]) or None,
        parts.query,
        resource,
        entry.get("fullUrl"),
        headers,
    )


def _status(code: int) -> str:
    return {200: "200 OK", 201: "201 Created", 204: "204 No Content"}.get(code, str(code))


def _written(row: StoredRow, status: int, base: str, minimal: bool) -> dict[str, Any]:
    response = {
        "status": _status(status),
        "location": f"{row.res_type}/{row.res_id}/_history/{row.version}",
        "etag": f'W/"{row.version}"',
        "lastModified": fhir_instant(row.last_updated_utc),
    }
    out: dict[str, Any] = {"fullUrl": f"{base}/{row.res_type}/{row.res_id}", "response": response}
    if not minimal and row.content is not None:
        out["resource"] = jsonutil.raw(row.content)  # the stored text, spliced into the answer
    return out


def _patch_operations(entry: EntryRequest) -> Any:
    resource = entry.resource or {}
    if resource.get("resourceType") == "Binary" and resource.get("data"):
        return jsonutil.loads(base64.b64decode(resource["data"]))
    raise _entry_error(entry.index, "PATCH needs a Binary resource holding a JSON Patch")


def run_entry(ctx: Ctx, entry: EntryRequest, base: str, minimal: bool) -> dict[str, Any]:
    """One entry through the same service functions as the REST API (scopes and consent apply)."""
    if entry.method == "GET" or entry.method == "HEAD":
        if entry.res_id is None:
            items = parse_qsl(entry.query, keep_blank_values=True)
            body = searching.search(ctx, entry.res_type, items, None, base)
            return {"resource": jsonutil.raw(body), "response": {"status": "200 OK"}}
        parts = entry.res_id.split("/")
        row = (
            reads.vread(ctx, entry.res_type, parts[0], parts[2])
            if len(parts) == 3
            else reads.read(ctx, entry.res_type, parts[0])
        )
        return _written(row, 200, base, False) | {
            "response": {"status": "200 OK", "etag": f'W/"{row.version}"'}
        }
    if entry.method == "DELETE":
        if entry.res_id is None:
            raise _entry_error(entry.index, "conditional delete is not supported")
        writes.delete(ctx, entry.res_type, entry.res_id)
        return {"response": {"status": "204 No Content"}}
    if_match = parse_if_match(entry.headers.get("ifMatch"))
    resource = entry.resource
    if entry.method == "POST":
        assert resource is not None
        result = writes.create(
            ctx, entry.res_type, resource, entry.headers.get("ifNoneExist"), assigned_id=entry.assigned_id
        )
    elif entry.method == "PUT":
        assert resource is not None
        if entry.res_id is None:
            result = writes.conditional_update(ctx, entry.res_type, entry.query, resource, if_match)
        else:
            result = writes.update(ctx, entry.res_type, entry.res_id, resource, if_match)
    else:
        if entry.res_id is None:
            raise _entry_error(entry.index, "PATCH needs a resource id in request.url")
        result = writes.patch(ctx, entry.res_type, entry.res_id, _patch_operations(entry), if_match)
    return _written(result.row, 201 if result.created else 200, base, minimal)


def _conditional_resolver(ctx: Ctx, index: int) -> Callable[[str], str | None]:
    def resolve(reference: str) -> str | None:
        res_type, _, query = reference.partition("?")
        require_stored_type(res_type)
        matches = find_matches(ctx, res_type, query)
        if len(matches) != 1:
            raise PreconditionFailed(
                f"Bundle.entry[{index}]: conditional reference '{reference[:80]}' matches {len(matches)} "
                "resources (exactly one is needed)"
            )
        return f"{res_type}/{matches[0].res_id}"

    return resolve


def run_transaction(ctx: Ctx, entries: list[EntryRequest], base: str, minimal: bool) -> list[dict[str, Any]]:
    """All entries in ``ctx``'s transaction; any error propagates (and rolls back)."""
    mapping: dict[str, str] = {}
    targets: set[str] = set()
    for entry in entries:
        if entry.method == "POST" and entry.full_url and entry.full_url.startswith("urn:"):
            new_id = make_id()
            mapping[entry.full_url] = f"{entry.res_type}/{new_id}"
            entry.assigned_id = new_id
        elif entry.res_id is not None and entry.method != "GET":
            key = f"{entry.res_type}/{entry.res_id}"
            if key in targets:
                raise _entry_error(entry.index, f"{key} is the target of more than one entry")
            targets.add(key)
    for entry in entries:
        if entry.resource is not None:
            rewrite_references(entry.resource, mapping, _conditional_resolver(ctx, entry.index))
    ctx.grouped_writes = transaction_writes()  # its writes audited per person (audit.grouped)
    try:
        responses = _run_entries(ctx, entries, base, minimal)
        ctx.audit_events.extend(ctx.grouped_writes.drain(ctx.access))
    finally:  # rolled back: its writes are not audited as done (refusals are, one by one)
        ctx.grouped_writes = None
    return [responses[e.index] for e in entries]


def _run_entries(
    ctx: Ctx, entries: list[EntryRequest], base: str, minimal: bool
) -> dict[int, dict[str, Any]]:
    """The entries in processing order (http.html#trules); their responses by index."""
    responses: dict[int, dict[str, Any]] = {}
    creates = WriteBatch(ctx)
    for entry in sorted(entries, key=lambda e: (_ORDER[e.method], e.index)):
        plain_create = entry.method == "POST" and not entry.headers.get("ifNoneExist")
        if not plain_create:
            creates.flush()  # its errors name the resource they are about
        try:
            if plain_create:
                assert entry.resource is not None  # parse_entries: a POST has one
                result, _ = creates.create(entry.res_type, entry.resource, entry.assigned_id)
                responses[entry.index] = _written(result.row, 201, base, minimal)
            else:
                responses[entry.index] = run_entry(ctx, entry, base, minimal)
        except FhirError as exc:
            _name_entry(exc, entry.index)
            raise
    creates.flush()
    return responses


def _name_entry(exc: FhirError, index: int) -> None:
    """Prefix ``exc``'s messages with the entry they are about."""
    exc.issues = [
        Issue(i.severity, i.code, f"Bundle.entry[{index}]: {i.diagnostics}", i.expression) for i in exc.issues
    ]
