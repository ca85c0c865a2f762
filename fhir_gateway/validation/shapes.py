"""Structural validation by shape: the full R4 model check once per shape of resource.

Whether a resource matches the R4 structure (FHIR R4 validation.html, "Structure") depends
on its shape, meaning which elements are present (with list lengths and JSON types of their
values), and on each primitive value being valid for its FHIR type (datatypes.html#primitive).
The model-level rules of fhir.resources (unknown elements, required elements, one choice
of ``[x]``, no null in complex lists) depend on the shape only. So when a resource of a
shape already accepted by the full model check comes again, as the rows of a partner file
do, checking each primitive value against the type its element has in that shape is
the same check, at a fraction of the cost. A shape whose elements cannot all be typed (a
contained resource) is always checked in full.
"""

from __future__ import annotations

import types
import typing
from collections import OrderedDict
from collections.abc import Callable
from contextlib import suppress
from functools import cache, reduce
from operator import getitem
from typing import Any

from fhir_core.types import FhirBase, FhirElementOrResourceBase
from pydantic import TypeAdapter, ValidationError

Path = tuple[str | int, ...]
Check = tuple[Path, Callable[[Any], Any], set[tuple[type, Any]]]
Plan = tuple[Check, ...]
_SIZE = 2048


def shape(node: Any) -> Any:
    """A hashable description of ``node``'s elements, list lengths and JSON types."""
    kind = type(node)
    if kind is dict:
        return _dict_shape(node)
    if kind is list:
        return (_List, tuple([shape(item) for item in node]))
    return kind


def _dict_shape(node: dict[str, Any]) -> Any:
    """``shape`` of a dict, its primitive values typed in place (no call per leaf)."""
    out = []
    for key, value in node.items():
        kind = type(value)
        if kind is dict:
            out.append((key, _dict_shape(value)))
        elif kind is list:
            out.append((key, (_List, tuple([shape(item) for item in value]))))
        else:
            out.append((key, kind))
    return tuple(out)


class _List:
    """Marks a list in a shape."""


class _Unplannable(Exception):
    """An element whose type cannot be resolved without the full model check."""


def _strip_optional(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
        raise _Unplannable(str(annotation))
    return annotation


@cache
def _fields(model: Any) -> dict[str, Any]:
    """The model's element types by JSON name."""
    out: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        out[info.alias or name] = info.annotation
        out.setdefault(name, info.annotation)
    return out


@cache
def _validator(annotation: Any) -> Callable[[Any], Any]:
    return TypeAdapter(annotation).validate_python


_PASSED_SIZE = 4096


@cache
def _passed(annotation: Any) -> set[tuple[type, Any]]:
    """(JSON type, value) of primitive values lately found valid for ``annotation`` (the
    rows of a file repeat their codes, systems, dates: each is checked once)."""
    return set()


def _plan_value(annotation: Any, value: Any, path: Path, out: list[Check]) -> None:
    annotation = _strip_optional(annotation)
    if typing.get_origin(annotation) in (list, typing.List):  # noqa: UP006
        if not isinstance(value, list):
            raise _Unplannable(str(path))
        (inner,) = typing.get_args(annotation)
        for index, item in enumerate(value):
            _plan_value(inner, item, (*path, index), out)
        return
    if value is None:
        return
    if isinstance(annotation, type) and issubclass(annotation, FhirBase):
        if issubclass(annotation, FhirElementOrResourceBase) or not isinstance(value, dict):
            raise _Unplannable(str(path))
        _plan_model(annotation.get_model_klass(), value, path, out)
        return
    if isinstance(value, dict | list):
        raise _Unplannable(str(path))
    out.append((path, _validator(annotation), _passed(annotation)))


def _plan_model(model: Any, node: dict[str, Any], path: Path, out: list[Check]) -> None:
    fields = _fields(model)
    for key, value in node.items():
        if key == "resourceType" and not path:
            continue
        if key not in fields:
            raise _Unplannable(key)
        _plan_value(fields[key], value, (*path, key), out)


def plan_for(model: Any, resource: dict[str, Any]) -> Plan | None:
    """The primitive checks standing for the model check of resources shaped like
    ``resource`` (which passed the model check); None when the shape cannot be planned."""
    out: list[Check] = []
    try:
        _plan_model(model, resource, (), out)
    except _Unplannable:
        return None
    return tuple(out)


def _get(node: Any, path: Path) -> Any:
    return reduce(getitem, path, node)


class ShapeCache:
    """Plans of the shapes that passed the full check, per resource type (bounded; shared by
    the request threads: a lost update only costs a full check)."""

    def __init__(self) -> None:
        self._plans: OrderedDict[tuple[str, Any], Plan | None] = OrderedDict()

    def passes(self, res_type: str, resource: dict[str, Any]) -> tuple[bool, Any]:
        """(True when a known shape's primitive checks all pass, the shape key)."""
        key = (res_type, shape(resource))
        plan = self._plans.get(key)
        if plan is None:
            return False, key
        with suppress(KeyError):  # evicted meanwhile by another thread: the plan is still valid
            self._plans.move_to_end(key)
        root: Any = resource
        try:
            for path, check, passed in plan:
                value = reduce(getitem, path, root)
                seen = (type(value), value)
                if seen in passed:
                    continue
                check(value)
                if len(passed) >= _PASSED_SIZE:
                    passed.clear()
                passed.add(seen)
        except (ValidationError, ValueError, TypeError):
            return False, key
        return True, key

    def learn(self, key: Any, model: Any, resource: dict[str, Any]) -> None:
        """``resource`` (of shape ``key``) passed the full model check."""
        if key in self._plans:
            return
        plan = plan_for(model, resource)
        if plan is not None:
            self._plans[key] = plan
            if len(self._plans) > _SIZE:
                with suppress(KeyError):
                    self._plans.popitem(last=False)
