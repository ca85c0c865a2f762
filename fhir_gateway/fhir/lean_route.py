"""A FastAPI route that calls simple endpoints directly, without the dependency solver.

The FHIR interactions (FHIR R4 http.html: read, search, create, update, patch, delete...)
take the request, text path parameters, optional text headers and a few dependencies of the
gateway's own that need nothing but the request (the caller's access, the body). FastAPI's
generic solver (dependency graph, parameter validation) cost about a tenth of a read's CPU,
and of a create's, for nothing to solve. ``LeanRoute`` keeps the endpoint's declared
signature for the OpenAPI description and, when every parameter is one of these, resolves
them itself:

- ``request: Request``;
- a ``str`` path parameter, without default;
- ``Annotated[str | None, Header()] = None``: the header (underscores read as hyphens, or the
  ``Header``'s alias), None when absent;
- ``Annotated[T, Depends(f)]`` where ``f`` is a coroutine function of the request alone:
  ``await f(request)``, once per request per ``f`` (as FastAPI caches it).

Any other endpoint keeps FastAPI's handler unchanged.

A lean route also offers ``direct_app``, the ASGI call of its handler without FastAPI's
per-request wrapping (two ``AsyncExitStack`` for dependencies with ``yield``, which these
endpoints have none of, and a second exception-handling layer: the application's
``ExceptionMiddleware`` turns the same exceptions into the same responses). The gateway's
route dispatch (``kit.route_index``) calls it when the route was matched there.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Awaitable, Callable, Coroutine
from typing import Annotated, Any, Union, get_args, get_origin, get_type_hints

from fastapi.params import Depends, Header
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

Handler = Callable[[Request], Coroutine[Any, Any, Response]]
# How one argument is taken from the request: its path parameter, header, or dependency.
Source = tuple[str, str, Any]  # (name, "request" | "path" | "header" | "depends", key or function)


class LeanRoute(APIRoute):
    """``APIRoute`` with a direct call for endpoints whose parameters ``_sources`` resolves."""

    direct_app: ASGIApp | None = None

    def get_route_handler(self) -> Handler:
        sources = _sources(self.endpoint, set(self.param_convertors))
        if sources is None:
            return super().get_route_handler()
        endpoint = self.endpoint

        async def handler(request: Request) -> Response:
            arguments: dict[str, Any] = {}
            resolved: dict[Any, Any] = {}
            for name, kind, key in sources:
                if kind == "request":
                    arguments[name] = request
                elif kind == "path":
                    arguments[name] = request.path_params[key]
                elif kind == "header":
                    arguments[name] = request.headers.get(key)
                else:
                    if key not in resolved:
                        resolved[key] = await key(request)
                    arguments[name] = resolved[key]
            response: Response = await endpoint(**arguments)
            return response

        async def direct_app(scope: Scope, receive: Receive, send: Send) -> None:
            response = await handler(Request(scope, receive, send))
            await response(scope, receive, send)

        self.direct_app = direct_app
        return handler


def _sources(endpoint: Callable[..., Any], path_params: set[str]) -> list[Source] | None:
    """Where each of the endpoint's parameters comes from, or None if one needs FastAPI."""
    if not inspect.iscoroutinefunction(endpoint):
        return None
    hints = get_type_hints(endpoint, include_extras=True)
    sources: list[Source] = []
    for parameter in inspect.signature(endpoint).parameters.values():
        if parameter.kind not in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY):
            return None
        source = _source(parameter, hints.get(parameter.name), path_params)
        if source is None:
            return None
        sources.append(source)
    return sources


def _source(parameter: inspect.Parameter, hint: Any, path_params: set[str]) -> Source | None:
    name, default = parameter.name, parameter.default
    if hint is Request:
        return (name, "request", None)
    if hint is str and name in path_params and default is inspect.Parameter.empty:
        return (name, "path", name)
    if get_origin(hint) is not Annotated:
        return None
    base, *extras = get_args(hint)
    if len(extras) != 1:
        return None
    marker = extras[0]
    if type(marker) is Header and _optional_str(base) and default is None:
        alias = marker.alias or (name.replace("_", "-") if marker.convert_underscores else name)
        return (name, "header", alias.lower())
    required = default is inspect.Parameter.empty
    if type(marker) is Depends and _of_request_alone(marker.dependency) and required:
        return (name, "depends", marker.dependency)
    return None


def _optional_str(hint: Any) -> bool:
    return get_origin(hint) in (Union, types.UnionType) and set(get_args(hint)) == {str, type(None)}


def _of_request_alone(dependency: Callable[..., Awaitable[Any]] | None) -> bool:
    """A coroutine function whose one parameter is ``request: Request``."""
    if dependency is None or not inspect.iscoroutinefunction(dependency):
        return False
    parameters = list(inspect.signature(dependency).parameters.values())
    return (
        len(parameters) == 1
        and parameters[0].default is inspect.Parameter.empty
        and get_type_hints(dependency).get(parameters[0].name) is Request
    )
