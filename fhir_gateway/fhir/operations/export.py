"""Bulk ``$export`` (FHIR Bulk Data Access IG v2.0.0, export.html): kick-off, status, cancel, files.

- Kick-off ``GET [base]/$export``, ``[base]/Patient/$export``, ``[base]/Group/[id]/$export``
  with ``Prefer: respond-async``: 202 Accepted and ``Content-Location`` (the status URL). The
  job is bound to the requesting client and keeps its AccessContext (``exports.owner``).
  Parameters: ``_outputFormat`` (``application/fhir+ndjson``, ``application/ndjson``,
  ``ndjson``), ``_since`` (resources changed after it), ``_type`` (comma list). Others
  (``_elements``, ``patient``, ``_typeFilter``, ``includeAssociatedData``) are refused (400)
  unless ``Prefer: handling=lenient``, then ignored. Types the token cannot read are left out;
  naming one in ``_type`` is a 403. Break-glass does not carry over to a job (403).
- Status ``GET [base]/$export-status/[job]``: 202 with ``X-Progress`` and ``Retry-After`` while
  it runs; 200 and the JSON manifest (``transactionTime``, ``request``, ``requiresAccessToken``,
  ``output``, ``error``) with ``Expires`` when done; 500 with an OperationOutcome when it failed.
  ``DELETE`` cancels (202); afterwards the status is a 404.
- Files ``GET [base]/$export-file/[job]/[file]`` with the same client's token.

Another client asking about a job gets 404, as if it did not exist. Each file download is
audited (one AuditEvent); the worker audits the job once when it ends.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fhir_gateway.consent.visibility import AUDIT_TYPE
from fhir_gateway.exports.owner import owner_record
from fhir_gateway.fhir.context import Ctx
from fhir_gateway.fhir.operations.everything import COMPARTMENT_TYPES, requested_types
from fhir_gateway.fhir.requests import parse_instant
from fhir_gateway.fhir.resource_types import STORED_TYPES
from fhir_gateway.kit.errors import BadRequest, Forbidden, NotFound
from fhir_gateway.kit.query_string import urlencode
from fhir_gateway.kit.timeutil import fhir_instant, utcnow
from fhir_gateway.storage import export_repository, repository
from fhir_gateway.storage.export_repository import ExportJob
from fhir_gateway.storage.tables import resource

NDJSON = "application/fhir+ndjson"
OUTPUT_FORMATS = frozenset({NDJSON, "application/ndjson", "ndjson"})
UNSUPPORTED = ("_elements", "patient", "_typeFilter", "includeAssociatedData")
KNOWN = frozenset({"_outputFormat", "_since", "_type", *UNSUPPORTED})
SYSTEM_TYPES = tuple(sorted(STORED_TYPES - {AUDIT_TYPE}))
_JOB_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class KickOff:
    """The HTTP side of a kick-off: its parameters, headers and URL."""

    params: list[tuple[str, str]]
    prefer: str
    accept: str | None
    url: str
    break_glass: bool = False


def _prefer(prefer: str, token: str) -> bool:
    return token in {p.strip().lower() for p in prefer.replace(";", ",").split(",")}


def _check_request(k: KickOff) -> dict[str, str]:
    if not _prefer(k.prefer, "respond-async"):
        raise BadRequest("$export runs asynchronously: send 'Prefer: respond-async'")
    if k.accept and not any(a in k.accept for a in ("application/fhir+json", "*/*", "application/json")):
        raise BadRequest("$export answers application/fhir+json (Accept)")
    lenient = _prefer(k.prefer, "handling=lenient")
    params: dict[str, str] = {}
    for name, value in k.params:
        if name in UNSUPPORTED or name not in KNOWN:
            if not lenient:
                raise BadRequest(f"$export parameter '{name[:40]}' is not supported", expression=[name[:40]])
            continue
        if name == "_type" and name in params:
            value = f"{params[name]},{value}"
        params[name] = value
    output_format = params.get("_outputFormat")
    if output_format and output_format not in OUTPUT_FORMATS:
        raise BadRequest(f"_outputFormat '{output_format[:60]}' is not supported (use {NDJSON})")
    if k.break_glass:
        raise Forbidden("Break-glass access is for one request, not for a bulk export")
    return params


def kick_off(ctx: Ctx, level: str, group_id: str | None, k: KickOff) -> str:
    """Check the request and record the job; its id (see the module docstring)."""
    params = _check_request(k)
    if level == "system":
        types = requested_types(ctx, params.get("_type"), SYSTEM_TYPES + (AUDIT_TYPE,), SYSTEM_TYPES)
    else:
        allowed = COMPARTMENT_TYPES + (AUDIT_TYPE,)
        types = requested_types(ctx, params.get("_type"), allowed, COMPARTMENT_TYPES)
    if not types:
        raise Forbidden("The token's scopes allow reading none of the types to export")
    if level == "group":
        assert group_id is not None
        ctx.require_scope("Group", "r")
        group = repository.get_current(ctx.conn, "Group", group_id, visible=ctx.visible(resource, "Group"))
        if group is None or group.deleted:
            raise NotFound(f"Group/{group_id} is not known")
    since = parse_instant("_since", params.get("_since"))
    job_id = uuid.uuid4().hex
    export_repository.create(
        ctx.conn,
        job_id,
        owner_client=ctx.access.client_id,
        owner=owner_record(ctx.access),
        level=level,
        group_id=group_id,
        types=types,
        since=since,
        transaction_time=utcnow().replace(tzinfo=None),
        request_url=k.url,
    )
    return job_id


def owned_job(ctx: Ctx, job_id: str) -> ExportJob:
    """The job if this client started it and it was not cancelled; else 404 (no existence leak)."""
    found = export_repository.get(ctx.conn, job_id) if _JOB_ID.match(job_id) else None
    if found is None or found.owner_client != ctx.access.client_id or found.status == "cancelled":
        raise NotFound(f"No export job {job_id[:40]} for this client")
    return found


def manifest(found: ExportJob, base: str) -> dict[str, Any]:
    """The complete-status body (export.html#response---complete-status)."""
    return {
        "transactionTime": fhir_instant(found.transaction_time.replace(tzinfo=utcnow().tzinfo)),
        "request": found.request_url,
        "requiresAccessToken": True,
        "output": [
            {"type": o["type"], "url": f"{base}/$export-file/{found.job_id}/{o['file']}", "count": o["count"]}
            for o in found.output
        ],
        "error": [],
    }


def cancel(ctx: Ctx, job_id: str) -> None:
    """DELETE on the status URL (export.html#delete-request)."""
    found = owned_job(ctx, job_id)
    export_repository.cancel(ctx.conn, found.job_id, utcnow().replace(tzinfo=None), 0.0)


def job_file(ctx: Ctx, job_id: str, name: str, export_dir: Path) -> Path:
    """The path of one file of a completed job of this client (404 otherwise), audited."""
    found = owned_job(ctx, job_id)
    entry = next((o for o in found.output if o["file"] == name), None)
    if found.status != "completed" or entry is None or found.attempt is None:
        raise NotFound(f"No file {name[:80]} in export job {job_id}")
    path = export_dir / found.job_id / found.attempt / str(entry["file"])
    if not path.is_file():
        raise NotFound(f"The file {name[:80]} of export job {job_id} is gone")
    query = urlencode({"_operation": "export-file", "job": found.job_id, "file": name})
    ctx.audit("operation", str(entry["type"]), None, None, query=query)
    return path
