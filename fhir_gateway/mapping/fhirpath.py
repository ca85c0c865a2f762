"""FHIRPath expressions of the format declarations (FHIR R4 fhirpath.html), compiled once.

A format's ``bind`` (values taken from a resource found by a lookup) and its export fields,
``resolve`` and ``require`` are FHIRPath expressions evaluated on every row or resource.
fhirpathpy interprets its syntax tree at every call (about 140 µs for the visits' coordinator
binding); the subset the profiles' invariants use (``validation.fastpath``: navigation,
``where``, ``exists``, ``first``, comparisons, boolean logic...) runs as Python closures in a
few microseconds. An expression outside that subset, or a value the subset cannot judge at
run time, is evaluated by fhirpathpy, so both give the same answers.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

import fhirpathpy

from fhir_gateway.validation.fastpath import Unsupported, compile_fast

Evaluate = Callable[[dict[str, Any]], list[Any]]


@cache
def compiled_path(expression: str) -> Evaluate:
    """``expression`` compiled once: the fast subset when it covers it, fhirpathpy otherwise."""
    slow = fhirpathpy.compile(expression)
    fast = compile_fast(expression)

    def evaluate(resource: dict[str, Any]) -> list[Any]:
        if fast is not None:
            try:
                return fast([resource])
            except Unsupported:
                pass
        return slow(resource, None)

    return evaluate


def first_value(resource: dict[str, Any], expression: str) -> Any:
    """The first value ``expression`` gives on ``resource``, or None."""
    found = compiled_path(expression)(resource)
    return found[0] if found else None
