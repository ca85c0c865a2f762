"""Route matching by path depth (fhir_gateway/kit/route_index.py): the same route as the
full router for every route of the application, and the full router's answers otherwise."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI
from starlette.routing import BaseRoute, Match, Route
from starlette.testclient import TestClient

from fhir_gateway.kit.route_index import DepthIndex


def _chosen(routes: list[BaseRoute], method: str, path: str) -> BaseRoute | None:
    """Starlette's choice: the first full match, else the first match by path alone."""
    scope = {"type": "http", "method": method, "path": path, "root_path": ""}
    partial = None
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return route
        if match is Match.PARTIAL and partial is None:
            partial = route
    return partial


def _sample_paths(app: FastAPI) -> list[str]:
    paths = {"/fhir/Task/$late", "/fhir/Patient/$export", "/fhir/Task/", "/nothing/here", "/fhir/a/b/c/d/e"}
    for route in app.router.routes:
        if isinstance(route, Route):
            paths.add(re.sub(r"\{[^}]+\}", "x1", route.path))
            paths.add(re.sub(r"\{[^}]+\}", "Patient", route.path))
    return sorted(paths)


def test_every_request_gets_the_route_the_full_list_chooses(app: FastAPI) -> None:
    index = app.router.middleware_stack
    assert isinstance(index, DepthIndex)
    index._rebuild()
    routes = list(app.router.routes)
    for path in _sample_paths(app):
        subset = index._by_depth.get(path.count("/"))
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            expected = _chosen(routes, method, path)
            found = _chosen(list(subset.routes), method, path) if subset is not None else None
            assert found is expected, (method, path)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/fhir/metadata", 200),
        ("GET", "/health/live", 200),
        ("GET", "/nothing/here", 404),
        ("DELETE", "/fhir/metadata", 405),
        ("GET", "/fhir/Task/t1", 401),  # the read route, which needs a token
    ],
)
def test_answers_through_http(http: TestClient, method: str, path: str, status: int) -> None:
    assert http.request(method, path).status_code == status
