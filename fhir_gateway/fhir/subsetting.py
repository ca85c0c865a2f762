"""``_summary`` and ``_elements`` (FHIR R4 search.html#summary, #elements).

Subsetted resources carry the ``SUBSETTED`` tag (v3 ObservationValue) so that nobody
mistakes them for complete ones. ``_summary=true`` keeps the elements the R4 models flag as
summary elements.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}
_ALWAYS = ("resourceType", "id", "meta")


@cache
def _summary_elements(res_type: str) -> frozenset[str]:
    model = get_fhir_model_class(res_type)
    names = set()
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if extra.get("summary_element_property"):
            names.add(info.alias or name)
    return frozenset(names)


def _tag(resource: dict[str, Any]) -> dict[str, Any]:
    meta = dict(resource.get("meta") or {})
    meta["tag"] = [*meta.get("tag", []), SUBSETTED]
    resource["meta"] = meta
    return resource


def subset(resource: dict[str, Any], summary: str | None, elements: tuple[str, ...]) -> dict[str, Any]:
    """The resource reduced per ``_summary`` / ``_elements``."""
    if summary == "data":
        return _tag({k: v for k, v in resource.items() if k != "text"})
    if summary == "text":
        return _tag({k: v for k, v in resource.items() if k in (*_ALWAYS, "text")})
    if summary == "true":
        keep = _summary_elements(str(resource.get("resourceType")))
        return _tag(
            {k: v for k, v in resource.items() if k in _ALWAYS or k in keep or k.startswith(tuple(keep))}
        )
    if elements:
        wanted = {e.split(".")[-1] for e in elements}
        return _tag({k: v for k, v in resource.items() if k in _ALWAYS or k in wanted})
    return resource
