"""Route matching by path depth: a dispatch index in front of the application's router.

Starlette tries the routes one by one, in order, until one matches; the FHIR read was the
36th, and trying the 35 before it cost a tenth of a read's framework time. A route whose
path has no ``:path`` parameter matches only paths with as many ``/`` as its own, so a
request needs to try only the routes of its depth, in the same order: the route chosen is
the one the full list would choose (a route of another depth can match neither fully nor
by path alone). A request nothing matches at its depth goes through the full router
(its 404, 405 and trailing-slash redirects unchanged).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRouter
from starlette._utils import get_route_path
from starlette.convertors import PathConvertor
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send


def _depth(route: BaseRoute) -> int | None:
    """The number of ``/`` of the paths ``route`` matches, or None when it may vary."""
    if not isinstance(route, Route):
        return None  # a Mount, a websocket route...: tried at every depth
    if any(isinstance(c, PathConvertor) for c in route.param_convertors.values()):
        return None
    return route.path.count("/")


class DepthIndex:
    """The ASGI dispatch of ``app.router`` through per-depth routers (``index_routes_by_depth``)."""

    def __init__(self, router: APIRouter) -> None:
        self.router = router
        self.full: ASGIApp = router.middleware_stack
        self._indexed_count = -1
        self._by_depth: dict[int, APIRouter] = {}

    def _rebuild(self) -> None:
        routes = list(self.router.routes)
        depths = {_depth(route) for route in routes} - {None}
        self._by_depth = {
            depth: APIRouter(
                routes=[r for r in routes if _depth(r) in (depth, None)],
                redirect_slashes=False,  # no match at this depth: the full router decides
                default=self.full,
            )
            for depth in depths
            if depth is not None
        }
        self._indexed_count = len(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.full(scope, receive, send)
            return
        if len(self.router.routes) != self._indexed_count:  # routes added since
            self._rebuild()
        subset = self._by_depth.get(get_route_path(scope).count("/"))
        if subset is None:
            await self.full(scope, receive, send)
            return
        scope.setdefault("router", self.router)  # url_for and friends see every route
        await subset.app(scope, receive, send)


def index_routes_by_depth(app: FastAPI) -> None:
    """Dispatch ``app``'s requests through a ``DepthIndex`` of its router's routes."""
    index = DepthIndex(app.router)
    router: Any = app.router
    router.middleware_stack = index
