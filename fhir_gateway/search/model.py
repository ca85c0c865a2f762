"""The parsed form of a search (FHIR R4 search.html): what the compiler turns into SQL."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from fhir_gateway.search.registry import SearchParam


@dataclass(frozen=True)
class Value:
    """One OR-ed value of a parameter, already typed."""

    raw: str
    prefix: str = "eq"
    system: str | None = None
    code: str | None = None
    low: datetime | None = None
    high: datetime | None = None
    number: float | None = None
    target_type: str | None = None
    target_id: str | None = None


@dataclass(frozen=True)
class Criterion:
    """``param[:modifier]=v1,v2``; ``chain`` and ``has`` lead to other resources."""

    param: SearchParam
    modifier: str | None
    values: tuple[Value, ...]
    missing: bool | None = None
    chain: Chain | None = None


@dataclass(frozen=True)
class Chain:
    """``ref.param=...``: the target type and the criterion applied to it (search.html#chaining)."""

    target_type: str
    criterion: Criterion


@dataclass(frozen=True)
class Has:
    """``_has:Type:ref:criterion`` (search.html#has): a resource of Type points here and matches."""

    source_type: str
    reference_param: str
    criterion: Criterion | None
    nested: Has | None = None


@dataclass(frozen=True)
class Include:
    """``_include=Source:param[:Target]`` or ``_revinclude`` (search.html#include)."""

    source_type: str
    param: str
    target_type: str | None
    iterate: bool
    reverse: bool


@dataclass
class SearchRequest:
    """A whole search: criteria (AND), result parameters and what was ignored."""

    resource_type: str
    criteria: list[Criterion] = field(default_factory=list)
    has: list[Has] = field(default_factory=list)
    ids: list[tuple[str, ...]] = field(default_factory=list)
    includes: list[Include] = field(default_factory=list)
    sort: list[tuple[str, bool]] = field(default_factory=list)
    count: int = 20
    offset: int = 0  # set by code only: from a verified ``_cursor``, or by internal pagers
    cursor: str | None = None  # the ``_cursor`` of a paging link, verified by ``fhir.cursors``
    total: str | None = None  # ``_total``; not given: counted only when the page tells it for free
    summary: str | None = None
    elements: tuple[str, ...] = ()
    ignored: list[str] = field(default_factory=list)
    kept: list[tuple[str, str]] = field(default_factory=list)
