"""Route matching by path segments (fhir_gateway/kit/route_index.py): the same route and
parameters as Starlette's matching for every route of the application, and the full router's
answers (404, 405) where no route fits."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI
from starlette.routing import BaseRoute, Match, Route
from starlette.testclient import TestClient

from fhir_gateway.kit.route_index import SegmentIndex

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def _full_match(routes: list[BaseRoute], method: str, path: str) -> tuple[BaseRoute, dict[str, str]] | None:
    """Starlette's choice when some route matches fully (path and method), else None."""
    scope = {"type": "http", "method": method, "path": path, "root_path": ""}
    for route in routes:
        match, child = route.matches(scope)
        if match is Match.FULL:
            return route, child["path_params"]
    return None


def _sample_paths(app: FastAPI) -> list[str]:
    paths = {
        "/fhir/Task/$late",
        "/fhir/Patient/$export",
        "/fhir/Task/",
        "/fhir/",
        "/fhir",
        "//fhir",
        "/fhir//x",
        "/nothing/here",
        "/fhir/a/b/c/d/e",
        "/fhir/Task/_history",
        "/fhir/Task/_search",
        "/fhir/Patient/$access",
        "/fhir/Patient/p1/$access",
        "/fhir/_history/x",
        "/fhir/Task/t%201",
    }
    for route in app.router.routes:
        if isinstance(route, Route):
            for filler in ("x1", "Patient", "_history", "$validate", "metadata"):
                paths.add(re.sub(r"\{[^}]+\}", filler, route.path))
    return sorted(paths)


def test_the_application_routes_are_all_indexed(app: FastAPI) -> None:
    index = app.router.middleware_stack
    assert isinstance(index, SegmentIndex)
    assert (
        index.choose({"type": "http", "method": "GET", "path": "/fhir/Task/t1", "root_path": ""}) is not None
    )


def test_every_request_gets_the_route_and_parameters_starlette_chooses(app: FastAPI) -> None:
    index = app.router.middleware_stack
    assert isinstance(index, SegmentIndex)
    routes = list(app.router.routes)
    for path in _sample_paths(app):
        for method in METHODS:
            scope = {"type": "http", "method": method, "path": path, "root_path": ""}
            assert index.choose(scope) == _full_match(routes, method, path), (method, path)


def test_a_route_not_made_of_whole_segments_turns_the_table_off() -> None:
    app = FastAPI()

    @app.get("/files/{rest:path}")
    async def files(rest: str) -> dict[str, str]:
        return {"rest": rest}

    index = SegmentIndex(app.router)
    assert index.choose({"type": "http", "method": "GET", "path": "/files/a/b", "root_path": ""}) is None


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
