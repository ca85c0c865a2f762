"""A fast evaluator for the FHIRPath subset the profiles' invariants use (FHIR R4 fhirpath.html).

fhirpathpy interprets its syntax tree at every call (about a millisecond per invariant with
a ``where``). This module turns the same tree, once, into Python closures over collections
of JSON values: member navigation (choice elements by prefix, ``x.ofType(T)`` as the
element ``xT``), ``$this``, literals, ``= != < <= > >=``, ``+ - * div mod``, ``and or
xor implies`` with three-valued logic (fhirpath.html#boolean-logic) and the functions
below. An expression outside the subset is not compiled (``None``: fhirpathpy evaluates
it); a value the subset cannot judge at run time raises ``Unsupported`` and fhirpathpy
decides. Tests check that both give the same answer on every example.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fhirpathpy.parser import parse

Fn = Callable[[list[Any]], list[Any]]


class Unsupported(Exception):
    """The expression or the value is outside the subset: let fhirpathpy evaluate it."""


def _navigate(focus: list[Any], name: str) -> list[Any]:
    out: list[Any] = []
    for item in focus:
        if not isinstance(item, dict):
            continue
        if name in item:
            found = item[name]
        else:
            found = next(
                (v for k, v in item.items() if k.startswith(name) and k[len(name) : len(name) + 1].isupper()),
                None,
            )
        if found is not None:
            out.extend(found if isinstance(found, list) else [found])
    return out


def _truth(values: list[Any]) -> bool | None:
    """A collection in boolean context (fhirpath.html#singleton-evaluation-of-collections)."""
    if not values:
        return None
    if len(values) > 1:
        raise Unsupported("a collection of several items in boolean context")
    first = values[0]
    return bool(first) if isinstance(first, bool) else True


def _single(values: list[Any]) -> Any:
    if len(values) != 1:
        raise Unsupported("not a single value")
    return values[0]


def _to_integer(values: list[Any]) -> list[Any]:
    value = _single(values) if values else None
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, int):
        return [value]
    return [int(value)] if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value) else []


def _substring(values: list[Any], start: int, length: int | None = None) -> list[Any]:
    if not values:
        return []
    text = _single(values)
    if not isinstance(text, str) or start < 0 or start >= len(text):
        return []
    return [text[start:] if length is None else text[start : start + length]]


def _string_fn(name: str, args: list[Any]) -> Callable[[list[Any]], list[Any]]:
    def apply(values: list[Any]) -> list[Any]:
        if not values:
            return []
        text = _single(values)
        if not isinstance(text, str):
            raise Unsupported(f"{name} on a non-string")
        if name == "matches":
            return [re.search(args[0], text) is not None]
        if name == "startsWith":
            return [text.startswith(args[0])]
        if name == "replace":
            return [text.replace(args[0], args[1])]
        return _substring(values, *args)

    return apply


_LOGIC: dict[str, Callable[[bool | None, bool | None], bool | None]] = {
    "and": lambda a, b: False if a is False or b is False else (True if a and b else None),
    "or": lambda a, b: True if a is True or b is True else (False if a is False and b is False else None),
    "xor": lambda a, b: None if a is None or b is None else a != b,
    "implies": lambda a, b: True if a is False or b is True else (None if a is None or b is None else False),
}


def _compare(op: str, a: Any, b: Any) -> bool:
    if op in ("=", "!="):
        return bool(a == b) == (op == "=")
    if (
        not (isinstance(a, int | float) and isinstance(b, int | float))
        or isinstance(a, bool)
        or isinstance(b, bool)
    ):
        raise Unsupported("ordering of non-numbers")
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def _arith(op: str, a: Any, b: Any) -> Any:
    if not (isinstance(a, int) and isinstance(b, int)) or isinstance(a, bool) or isinstance(b, bool):
        raise Unsupported("arithmetic on non-integers")
    if op in ("div", "mod") and b == 0:
        return None
    quotient = abs(a) // abs(b) * (1 if (a >= 0) == (b >= 0) else -1)  # truncated, exact on big integers
    return {"+": a + b, "-": a - b, "*": a * b, "div": quotient, "mod": a - b * quotient}[op]


def _literal(node: dict[str, Any]) -> list[Any]:
    kind, text = node["type"], node["text"]
    if kind == "StringLiteral":
        return [text[1:-1].replace("\\'", "'").replace("\\\\", "\\")]
    if kind == "BooleanLiteral":
        return [text == "true"]
    if kind == "NumberLiteral" and re.fullmatch(r"\d+", text):
        return [int(text)]
    raise Unsupported(f"literal {kind}")


def _constant_args(params: list[dict[str, Any]]) -> list[Any]:
    values = []
    for param in params:
        fn = _compile(param)
        result = fn([])  # literals do not depend on the focus
        values.append(_single(result))
    return values


def _function(node: dict[str, Any]) -> Callable[[list[Any]], list[Any]]:
    functn = node["children"][0]
    name = functn["children"][0]["text"]
    params = functn["children"][1]["children"] if len(functn["children"]) > 1 else []
    if name in ("where", "all", "exists") and params:
        crit = _compile(params[0])
        if name == "where":
            return lambda focus: [i for i in focus if _truth(crit([i])) is True]
        if name == "all":
            return lambda focus: [all(_truth(crit([i])) is True for i in focus)]
        return lambda focus: [any(_truth(crit([i])) is True for i in focus)]
    if params and name not in ("matches", "startsWith", "replace", "substring", "not"):
        raise Unsupported(f"function {name} with parameters")
    simple: dict[str, Callable[[list[Any]], list[Any]]] = {
        "exists": lambda focus: [bool(focus)],
        "empty": lambda focus: [not focus],
        "count": lambda focus: [len(focus)],
        "first": lambda focus: focus[:1],
        "toInteger": _to_integer,
        "hasValue": lambda focus: [len(focus) == 1 and not isinstance(focus[0], dict | list)],
    }
    if name == "not":
        if params:
            raise Unsupported("not() takes no parameter")

        def negate(focus: list[Any]) -> list[Any]:
            truth = _truth(focus)
            return [] if truth is None else [not truth]

        return negate
    if name in simple:
        return simple[name]
    if name in ("matches", "startsWith", "replace", "substring"):
        return _string_fn(name, _constant_args(params))
    raise Unsupported(f"function {name}")


def _binary(node: dict[str, Any]) -> Fn:
    op = node["terminalNodeText"][0]
    left, right = (_compile(c) for c in node["children"])
    if op in _LOGIC:
        logic = _LOGIC[op]

        def boolean(focus: list[Any]) -> list[Any]:
            result = logic(_truth(left(focus)), _truth(right(focus)))
            return [] if result is None else [result]

        return boolean

    def operate(focus: list[Any]) -> list[Any]:
        a, b = left(focus), right(focus)
        if not a or not b:
            return []
        x, y = _single(a), _single(b)
        result = _arith(op, x, y) if op in ("+", "-", "*", "div", "mod") else _compare(op, x, y)
        return [] if result is None else [result]

    return operate


def _invocation(node: dict[str, Any]) -> Fn:
    left_node, right_node = node["children"]
    right_kind = right_node["type"]
    if right_kind == "FunctionInvocation":
        functn = right_node["children"][0]
        if functn["children"][0]["text"] == "ofType" and left_node["type"] in (
            "TermExpression",
            "InvocationExpression",
        ):
            member = _member_tail(left_node)
            if member is not None:
                base, name = member
                type_name = functn["children"][1]["children"][0]["text"]
                key = name + type_name[0].upper() + type_name[1:]
                return lambda focus: [v for v in _navigate_exact(base(focus), key)]
    left = _compile(left_node)
    right = _member(right_node) if right_kind == "MemberInvocation" else _function(right_node)
    return lambda focus: right(left(focus))


def _navigate_exact(focus: list[Any], key: str) -> list[Any]:
    out: list[Any] = []
    for item in focus:
        if isinstance(item, dict) and item.get(key) is not None:
            found = item[key]
            out.extend(found if isinstance(found, list) else [found])
    return out


def _member_tail(node: dict[str, Any]) -> tuple[Fn, str] | None:
    """(focus of the member, member name) when ``node`` ends with a member navigation."""
    if node["type"] == "TermExpression":
        inner = node["children"][0]
        if inner["type"] == "InvocationTerm" and inner["children"][0]["type"] == "MemberInvocation":
            return (lambda focus: focus), inner["children"][0]["children"][0]["text"]
        return None
    left_node, right_node = node["children"]
    if right_node["type"] == "MemberInvocation":
        return _compile(left_node), right_node["children"][0]["text"]
    return None


def _member(node: dict[str, Any]) -> Fn:
    name = node["children"][0]["text"].strip("`")
    return lambda focus: _navigate(focus, name)


def _compile(node: dict[str, Any]) -> Fn:
    kind = node["type"]
    children = node.get("children", [])
    if kind in ("TermExpression", "InvocationTerm", "LiteralTerm") and len(children) == 1:
        if kind == "LiteralTerm":
            constant = _literal(children[0])
            return lambda focus: constant
        return _compile(children[0])
    if kind == "ParenthesizedTerm":
        return _compile(children[0])
    if kind == "MemberInvocation":
        return _member(node)
    if kind == "FunctionInvocation":
        return _function(node)
    if kind == "ThisInvocation":
        return lambda focus: focus
    if kind == "InvocationExpression":
        return _invocation(node)
    if kind in (
        "AndExpression",
        "OrExpression",
        "ImpliesExpression",
        "EqualityExpression",
        "InequalityExpression",
        "AdditiveExpression",
        "MultiplicativeExpression",
    ):
        return _binary(node)
    raise Unsupported(kind)


def compile_fast(expression: str) -> Fn | None:
    """Closures for ``expression``, or None when it is outside the subset."""
    try:
        tree = parse(expression)  # type: ignore[no-untyped-call]
        return _compile(tree["children"][0])
    except (Unsupported, KeyError, IndexError, TypeError, re.error):
        return None
