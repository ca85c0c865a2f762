"""``GET /fhir/Patient/{id}/$everything`` (FHIR R4 patient-operation-everything.html).

The person's record as a ``searchset`` Bundle, paged by ``_count`` and the links' cursors
(``fhir.cursors``, bound to the client): their Patient
resource, then every resource of their compartment (CarePlan, CareTeam, Consent, Goal,
Provenance, RelatedPerson, ServiceRequest, Task; AuditEvent only when ``_type`` asks for it),
and, as ``include`` entries, the Organizations, Practitioners and PractitionerRoles the page
refers to ("whatever resources are needed to support the records").

Consent and scopes: the same SQL filter as a search (``Ctx.visible``): a partner gets the
resources the person's consent lets it see, and nothing (404) when it may not see the person.
Types the token has no read scope for are left out; naming one in ``_type`` is a 403.
Parameters: ``_since`` (instant: resources changed at or after it), ``_type`` (comma list),
``_count``. ``start``/``end`` (care dates) are not supported, nor is ``_offset``: ignored
with a warning in an ``outcome`` entry (``_offset`` is a 400 under ``Prefer:
handling=strict``). One AuditEvent (``operation``) per call, with the deciding Consent or
policy.
"""

from __future__ import annotations

from fhir_gateway.fhir.context import Ctx
from fhir_gateway.fhir.pages import PageEntry, paging, searchset
from fhir_gateway.fhir.requests import parse_instant
from fhir_gateway.fhir.resource_types import STORED_TYPES
from fhir_gateway.fhir.responses import strict_handling
from fhir_gateway.kit.errors import BadRequest, Forbidden, Issue, NotFound
from fhir_gateway.kit.query_string import urlencode
from fhir_gateway.storage import compartment_repository, repository
from fhir_gateway.storage.tables import resource

COMPARTMENT_TYPES = (
    "Patient",
    "CarePlan",
    "CareTeam",
    "Consent",
    "Goal",
    "Provenance",
    "RelatedPerson",
    "ServiceRequest",
    "Task",
)
ON_REQUEST_TYPES = ("AuditEvent",)  # in the compartment, but only when ``_type`` names them
SUPPORT_TYPES = ("Organization", "Practitioner", "PractitionerRole")


def requested_types(
    ctx: Ctx, raw: str | None, allowed: tuple[str, ...], default: tuple[str, ...]
) -> list[str]:
    """The types of ``_type`` (or ``default``), checked: unknown 400, not granted by scopes 403.

    Without ``_type``, the types the token may not read are left out silently.
    """
    if not raw:
        return [t for t in default if ctx.access.allows(t, "r")]
    names = [t.strip() for t in raw.split(",") if t.strip()]
    for name in names:
        if name not in allowed or name not in STORED_TYPES:
            raise BadRequest(
                f"_type: '{name[:64]}' is not a type this operation returns", expression=["_type"]
            )
        if not ctx.access.allows(name, "r"):
            raise Forbidden(f"The token's scopes do not allow reading {name} (_type)")
    return list(dict.fromkeys(names))


def everything(
    ctx: Ctx, patient_id: str, params: dict[str, str], base: str, prefer: str | None = None
) -> bytes:
    """The page of the person's record; see the module docstring."""
    ctx.require_scope("Patient", "r")
    types = requested_types(ctx, params.get("_type"), COMPARTMENT_TYPES + ON_REQUEST_TYPES, COMPARTMENT_TYPES)
    since = parse_instant("_since", params.get("_since"))
    page = paging(ctx, f"{base}/Patient/{patient_id}/$everything", params, strict=strict_handling(prefer))
    person = repository.get_current(ctx.conn, "Patient", patient_id, visible=ctx.visible(resource, "Patient"))
    if person is None or person.deleted:
        hidden = ctx.hidden_exists("Patient", patient_id)
        if hidden is not None:
            ctx.audit("operation", "Patient", patient_id, patient_id, ok=False, query="_operation=everything")
        raise NotFound(f"Patient/{patient_id} is not known")
    visible = ctx.visible(resource, None)
    rows, total = compartment_repository.compartment_page(
        ctx.conn, patient_id, types, visible, since=since, count=page.count, offset=page.offset
    )
    entries = [PageEntry(t, i, c) for t, i, c in rows]
    support = [t for t in SUPPORT_TYPES if ctx.access.allows(t, "r")]
    sources = [(t, i) for t, i, _ in rows]
    for t, i, c in compartment_repository.referenced(
        ctx.conn, sources, support, visible, ctx.settings.max_include
    ):
        entries.append(PageEntry(t, i, c, "include"))
    warnings = [
        Issue("warning", "not-supported", f"Parameter '{name}' is not supported and was ignored", [name])
        for name in ("start", "end")
        if params.get(name)
    ]
    asked = [(k, v) for k, v in params.items() if k in ("_type", "_since")]
    ctx.audit(
        "operation",
        "Patient",
        patient_id,
        patient_id,
        query=urlencode([("_operation", "everything"), *asked]),
    )
    return searchset(base, page, entries, total, warnings=warnings)
