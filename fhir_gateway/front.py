"""The application's ASGI entry: FastAPI, with the FHIR interactions called directly.

Every request first went through nine layers before its route: FastAPI's and Starlette's
entries, the server-error, exception-telemetry and body-limit middleware, the request log,
the exception middleware, the exit-stack middleware and the router, each a coroutine (and
some a ``send`` wrapper) per request: about 10 µs of a read's 300 µs of CPU (py-spy, make
bench). ``GatewayApp`` keeps that stack for every other request and serves a request that
the route index (``kit.route_index``) matches to a lean FHIR route (``fhir.lean_route``:
read, vread, history, search, create, update, patch, delete, Bundles; FHIR R4 http.html)
with the two layers it needs: the request log (``observability.middleware.logged``) around
``ErrorGuard``, the exception and server-error middleware's behaviour in one layer (the
application's exception handlers by the exception's class; any other exception answered by
the handler of ``Exception``, then raised again for the server's log). Telemetry is off
(``app.create_app``), the body limit is the gateway's own (``fhir.requests.read_body``), and
these routes hold no file to close.

The request log is the outermost layer on both ways, so that a 500 answer, too, carries the
``X-Request-ID`` its log lines are found by.

A ``HEAD`` request is answered as the ``GET`` of the same URL without its body (RFC 9110
§9.3.2: the same status and headers, ``ETag``, ``Last-Modified`` and ``Content-Length``
included): the same scopes, consent, audit (a read) and errors as that ``GET``. FastAPI's
routes take no ``HEAD``; every general-purpose server must (RFC 9110 §9.1). The request log
names it ``GET``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from starlette._utils import is_async_callable
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fhir_gateway.kit.route_index import SegmentIndex
from fhir_gateway.observability.middleware import RequestLogMiddleware, logged

Handlers = dict[Any, Any]


class ErrorGuard:
    """``app`` with the application's exception handlers (Starlette's ``ExceptionMiddleware``
    and ``ServerErrorMiddleware`` in one layer)."""

    def __init__(self, app: ASGIApp, handlers: Handlers) -> None:
        self.app = app
        self.by_class = {key: h for key, h in handlers.items() if key not in (500, Exception)}
        self.unexpected = handlers.get(Exception) or handlers.get(500)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def sender(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, sender)
        except Exception as exc:
            if started:
                raise
            handler = self._handler(exc)
            if handler is None:
                raise
            request = Request(scope, receive)
            response = (
                await handler(request, exc)
                if is_async_callable(handler)
                else (await run_in_threadpool(handler, request, exc))
            )
            if response is not None:
                await response(scope, receive, sender)
            if handler is self.unexpected:
                raise  # the server logs it, as after Starlette's ServerErrorMiddleware
            exc.__traceback__ = None  # an exception instance reused would pile up tracebacks

    def _handler(self, exc: Exception) -> Any:
        for cls in type(exc).__mro__:
            if cls in self.by_class:
                return self.by_class[cls]
        return self.unexpected


class GatewayApp(FastAPI):
    """FastAPI whose lean FHIR routes are served without its per-request layers."""

    route_index: SegmentIndex | None = None  # set by ``kit.route_index.index_routes``
    _guards: dict[int, ErrorGuard]

    def build_middleware_stack(self) -> ASGIApp:
        """FastAPI's stack inside the request log (``RequestLogMiddleware``)."""
        self._guards = {}
        return RequestLogMiddleware(super().build_middleware_stack())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "HEAD":
            await self._get_without_body(scope, receive, send)
            return
        if scope["type"] == "http" and self.route_index is not None and self.middleware_stack is not None:
            if self.root_path:
                scope["root_path"] = self.root_path  # as FastAPI's entry does
            direct = self.route_index.direct_call(scope)
            if direct is not None:
                scope["app"] = self
                guard = self._guards.get(id(direct))
                if guard is None:
                    guard = self._guards[id(direct)] = ErrorGuard(direct, self.exception_handlers)
                await logged(guard, scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    async def _get_without_body(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A ``HEAD`` request: the ``GET`` of its URL, whose body is not sent."""

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self({**scope, "method": "GET"}, receive, headers_only)
