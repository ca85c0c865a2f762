"""Fast JSON (orjson) for the wire and the database."""

from __future__ import annotations

from typing import Any

import orjson

from fhir_gateway.kit.errors import BadRequest

MAX_DEPTH = 64


def dumps(obj: Any) -> bytes:
    """Serialise to compact UTF-8 JSON."""
    return orjson.dumps(obj)


def dumps_str(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def loads(data: bytes | str) -> Any:
    """Parse JSON or raise a 400 OperationOutcome naming the problem."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"Malformed JSON: {exc.msg} at position {exc.pos}", code="structure") from None


def loads_object(data: bytes | str, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """Parse a JSON object (a FHIR resource) no deeper than ``max_depth``, or raise 400."""
    if (b"\\u0000" in data) if isinstance(data, bytes) else ("\\u0000" in data):
        # FHIR R4 datatypes.html#string: no control characters but whitespace; PostgreSQL
        # text cannot hold NUL either
        raise BadRequest("JSON strings may not contain the NUL character (\\u0000)", code="invalid")
    obj = loads(data)
    if not isinstance(obj, dict):
        raise BadRequest("The body must be a JSON object (a FHIR resource)", code="structure")
    if _depth_exceeds(obj, max_depth):
        raise BadRequest(f"The JSON body is nested deeper than {max_depth} levels", code="too-costly")
    return obj


def _depth_exceeds(root: Any, limit: int) -> bool:
    """True when ``root`` nests more than ``limit`` levels (iterative: no recursion limit)."""
    stack: list[tuple[Any, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values() if isinstance(v, dict | list))
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node if isinstance(v, dict | list))
    return False
