"""Structural validation of incoming resources (FHIR R4 validation.html, "Structure").

fhir.resources' R4B models match R4 for the stored types. Errors become one 422
OperationOutcome with an issue per problem and the FHIRPath ``expression`` of the element.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from fhir_gateway.kit.errors import Issue, Unprocessable
from fhir_gateway.validation.shapes import ShapeCache


@cache
def _model(res_type: str) -> Any:
    return get_fhir_model_class(res_type)


def _fhirpath(res_type: str, loc: tuple[int | str, ...]) -> str:
    path = res_type
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not part.startswith("__") and not part.endswith("__"):
            path += f".{part}"
    return path


_SHAPES = ShapeCache()


def validate_structure(res_type: str, resource: dict[str, Any]) -> None:
    """Raise 422 when ``resource`` does not match the R4 structure of ``res_type``.

    A resource shaped like one already accepted only has its primitive values checked
    (``validation.shapes``: the same verdict at a fraction of the cost).
    """
    known, shape_key = _SHAPES.passes(res_type, resource)
    if known:
        return
    try:
        _model(res_type).model_validate(resource)
    except ValidationError as exc:
        issues = []
        for err in exc.errors(include_url=False, include_input=False)[:50]:
            loc = tuple(p for p in err["loc"] if isinstance(p, int | str))
            expr = _fhirpath(res_type, loc)
            issues.append(Issue("error", "structure", f"{expr}: {err['msg']}", [expr]))
        raise Unprocessable(
            f"{res_type} is not valid FHIR R4: {issues[0].diagnostics}", issues=issues
        ) from None
    except (TypeError, ValueError) as exc:
        raise Unprocessable(f"{res_type} is not valid FHIR R4: {exc}", code="structure") from None
    _SHAPES.learn(shape_key, _model(res_type), resource)
