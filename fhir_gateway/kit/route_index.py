"""Route matching by path segments: a dispatch table in front of the application's router.

Starlette tries the routes one by one, in order, until one matches (a regular expression and
a parameter dictionary per route tried): the FHIR read was the 36th route, and grouping the
routes by path depth still left about ten tries per request, a tenth of a read's framework
time. Every route here is made of whole segments, each a literal (``_history``,
``$validate``) or one text parameter (``{res_type}``). So a request's path, cut at its
``/``, is reduced to a signature: each segment is kept if some route of that depth has it as
a literal at that place, else stands for "other text" (or stays empty). The routes whose
pattern fits a signature are computed once, in the router's order; a request takes the
first of them that allows its method, exactly the route Starlette's ``FULL`` match would be.
Anything else (no route fits, or none allows the method: 404, 405, trailing-slash
redirects) goes through the full router, unchanged. If a route is not made of whole
segments (a ``:path`` or typed parameter, a mount), the table is not used at all.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute, APIRouter
from starlette._utils import get_route_path
from starlette.convertors import StringConvertor
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

_OTHER = object()  # a segment that is no route's literal at its place, and not empty
Pattern = tuple[Any, ...]  # per segment: its literal, or None for a parameter
Candidate = tuple[BaseRoute, tuple[tuple[int, str], ...]]  # the route, (segment, parameter name)
_SIGNATURES_KEPT = 4096


def _pattern(route: BaseRoute) -> tuple[Pattern, tuple[tuple[int, str], ...]] | None:
    """``route``'s segments (literal text, or None for a parameter) and its parameters'
    places, or None if it is not made of whole literal or text-parameter segments."""
    if not isinstance(route, Route) or route.path_format != route.path:
        return None  # the path_format differs only for typed parameters (``{id:int}`` ...)
    pattern: list[str | None] = []
    names: list[tuple[int, str]] = []
    for place, segment in enumerate(route.path.split("/")):
        if segment.startswith("{") and segment.endswith("}") and segment.count("{") == 1:
            name = segment[1:-1]
            if not isinstance(route.param_convertors.get(name), StringConvertor):
                return None
            pattern.append(None)
            names.append((place, name))
        elif "{" in segment or "}" in segment:
            return None
        else:
            pattern.append(segment)
    return tuple(pattern), tuple(names)


def _fits(pattern: Pattern, signature: Pattern) -> bool:
    return all(
        (wanted is None and seen != "") if wanted is None else wanted == seen
        for wanted, seen in zip(pattern, signature, strict=True)
    )


class _Depth:
    """The routes whose paths have one number of segments, and the signatures seen."""

    def __init__(self) -> None:
        self.routes: list[tuple[Pattern, Candidate]] = []
        self.literals: tuple[frozenset[str], ...] = ()
        self.by_signature: dict[Pattern, tuple[Candidate, ...]] = {}

    def seal(self) -> None:
        width = len(self.routes[0][0])
        self.literals = tuple(
            frozenset(p[place] for p, _ in self.routes if p[place] is not None) for place in range(width)
        )

    def candidates(self, segments: list[str]) -> tuple[Candidate, ...]:
        signature = tuple(
            segment if segment in known else (_OTHER if segment else "")
            for segment, known in zip(segments, self.literals, strict=True)
        )
        found = self.by_signature.get(signature)
        if found is None:
            found = tuple(candidate for pattern, candidate in self.routes if _fits(pattern, signature))
            if len(self.by_signature) >= _SIGNATURES_KEPT:
                self.by_signature.clear()
            self.by_signature[signature] = found
        return found


class SegmentIndex:
    """The ASGI dispatch of ``app.router`` through a segment table (``index_routes``)."""

    def __init__(self, router: APIRouter) -> None:
        self.router = router
        self.full: ASGIApp = router.middleware_stack
        self._indexed_count = -1
        self._by_depth: dict[int, _Depth] | None = None

    def _rebuild(self) -> None:
        routes = list(self.router.routes)
        self._indexed_count = len(routes)
        by_depth: dict[int, _Depth] = {}
        for route in routes:
            found = _pattern(route)
            if found is None:
                self._by_depth = None  # not made of whole segments: the full router for all
                return
            pattern, names = found
            by_depth.setdefault(len(pattern), _Depth()).routes.append((pattern, (route, names)))
        for depth in by_depth.values():
            depth.seal()
        usable = not getattr(self.router, "form_limits", None)  # set per request by the router
        self._by_depth = by_depth if usable else None

    def choose(self, scope: Scope) -> tuple[BaseRoute, dict[str, str]] | None:
        """The route and path parameters of an HTTP request, or None for the full router."""
        if len(self.router.routes) != self._indexed_count:  # routes added since
            self._rebuild()
        if self._by_depth is None:
            return None
        segments = get_route_path(scope).split("/")
        depth = self._by_depth.get(len(segments))
        if depth is None:
            return None
        method = scope["method"]
        for route, names in depth.candidates(segments):
            methods = getattr(route, "methods", None)
            if methods is None or method in methods:
                return route, {name: segments[place] for place, name in names}
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        chosen = self.choose(scope) if scope["type"] == "http" else None
        if chosen is None:
            await self.full(scope, receive, send)
            return
        route, params = chosen
        _enter(scope, route, params, self.router)
        direct: ASGIApp | None = getattr(route, "direct_app", None)  # fhir.lean_route
        await (direct or route.handle)(scope, receive, send)

    def direct_call(self, scope: Scope) -> ASGIApp | None:
        """For an HTTP request whose route has a ``direct_app`` (``fhir.lean_route``): that call,
        ``scope`` set as for it (route, path parameters); else None, ``scope`` unchanged."""
        chosen = self.choose(scope)
        if chosen is None:
            return None
        route, params = chosen
        direct: ASGIApp | None = getattr(route, "direct_app", None)
        if direct is not None:
            _enter(scope, route, params, self.router)
        return direct


def _enter(scope: Scope, route: BaseRoute, params: dict[str, str], router: APIRouter) -> None:
    """``scope`` as Starlette's matching of ``route`` leaves it."""
    path_params = dict(scope.get("path_params") or {})
    path_params.update(params)
    scope["endpoint"] = getattr(route, "endpoint", None)
    scope["path_params"] = path_params
    if isinstance(route, APIRoute):
        scope["route"] = route  # as FastAPI's matching sets it
    scope.setdefault("router", router)  # url_for and friends see every route


def index_routes(app: FastAPI) -> SegmentIndex:
    """Dispatch ``app``'s requests through a ``SegmentIndex`` of its router's routes (returned)."""
    index = SegmentIndex(app.router)
    router: Any = app.router
    router.middleware_stack = index
    return index
