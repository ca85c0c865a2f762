"""Invariants (``ElementDefinition.constraint``) evaluated with fhirpathpy (FHIR R4
elementdefinition.html#constraints, fhirpath.html).

Each expression is parsed once when the profile is loaded. It is evaluated with the
element as its context (a ``ResourceNode`` carrying the element's path, so that choice
types such as ``value.ofType(integer)`` resolve against the R4 model). An invariant holds
when the expression gives ``true``; ``false`` or an empty result is a violation. The
subset the profiles use runs on ``fastpath`` closures; fhirpathpy remains the reference
and evaluates anything outside that subset.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from antlr4 import CommonTokenStream, InputStream
from antlr4.error.ErrorListener import ErrorListener
from fhirpathpy import compile as fhirpath_compile
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models
from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

from fhir_gateway.validation.fastpath import Fn, Unsupported, compile_fast
from fhir_gateway.validation.terminology import ProfileLoadError

_R4 = models["r4"]


@dataclass(frozen=True)
class Invariant:
    """One compiled ``constraint``: key, severity, human text and the FHIRPath function."""

    key: str
    severity: str
    human: str
    expression: str
    element_path: str
    function: Callable[..., Any]
    fast: Fn | None = None

    def holds(self, value: Any) -> bool:
        """True when the expression gives exactly ``true`` on ``value`` (fast path first)."""
        if self.fast is not None:
            try:
                return self.fast([value]) == [True]
            except (Unsupported, TypeError, ValueError, AttributeError):
                pass  # outside the subset, or a malformed value: the reference implementation decides
        return self.holds_fhirpathpy(value)

    def holds_fhirpathpy(self, value: Any) -> bool:
        """The same answer from fhirpathpy (the reference implementation)."""
        node = ResourceNode.create_node(value, self.element_path)  # type: ignore[no-untyped-call]
        try:
            result = self.function(node)
        except Exception:  # noqa: BLE001 - a broken evaluation is a violation, not a crash
            return False
        return bool(result == [True])


class _Raise(ErrorListener):  # type: ignore[misc]
    def syntaxError(self, recognizer: Any, symbol: Any, line: int, column: int, msg: str, e: Any) -> None:  # noqa: N802
        raise ValueError(f"column {column}: {msg}")


def check_syntax(expression: str) -> None:
    """Raise ValueError when ``expression`` is not FHIRPath (fhirpathpy's parser recovers silently)."""
    lexer = FHIRPathLexer(InputStream(expression))
    lexer.removeErrorListeners()
    lexer.addErrorListener(_Raise())
    parser = FHIRPathParser(CommonTokenStream(lexer))
    parser.removeErrorListeners()
    parser.addErrorListener(_Raise())
    parser.expression()
    if parser.getCurrentToken().type != FHIRPathParser.EOF:
        raise ValueError(f"unexpected text after the expression at column {parser.getCurrentToken().column}")


def compile_invariant(constraint: dict[str, Any], element_path: str) -> Invariant:
    """Parse ``constraint.expression`` once (fhirpathpy ``compile`` with the R4 model)."""
    expression = constraint.get("expression")
    if not expression:
        raise ProfileLoadError(f"{element_path}: constraint {constraint.get('key')} has no expression")
    try:
        check_syntax(expression)
        function = fhirpath_compile(expression, _R4)
    except Exception as exc:  # noqa: BLE001 - report which invariant does not parse
        raise ProfileLoadError(f"{element_path}: constraint {constraint.get('key')}: {exc}") from None
    return Invariant(
        key=str(constraint["key"]),
        severity=str(constraint.get("severity", "error")),
        human=str(constraint.get("human", "")),
        expression=str(expression),
        element_path=element_path,
        function=function,
        fast=compile_fast(expression),
    )
