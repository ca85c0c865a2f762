"""``LeanRoute`` resolves the FHIR endpoints' parameters itself, exactly as FastAPI would, and
keeps their OpenAPI description."""

from __future__ import annotations

from typing import Annotated

import fastapi.routing
import pytest
from fastapi import APIRouter, Depends, FastAPI, Header
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.testclient import TestClient

from fhir_gateway.app import create_app
from fhir_gateway.fhir import bundle_endpoints, endpoints
from fhir_gateway.fhir.lean_route import LeanRoute, _sources
from fhir_gateway.kit.route_index import index_routes

calls: list[str] = []


async def who(request: Request) -> str:
    calls.append("who")
    if "authorization" not in request.headers:
        raise PermissionError("no credentials")
    return request.headers["authorization"]


Who = Annotated[str, Depends(who)]


def _app(*, flat: bool = False) -> FastAPI:
    """``flat``: the routes added to the application's own list, as ``create_app`` adds them."""
    router = APIRouter(route_class=LeanRoute)

    @router.post("/items/{kind}/{item_id}")
    async def post_item(
        kind: str,
        request: Request,
        caller: Who,
        again: Who,
        item_id: str,
        if_none_exist: Annotated[str | None, Header()] = None,
        prefer: Annotated[str | None, Header(alias="X-Prefer")] = None,
    ) -> Response:
        return JSONResponse(
            {"kind": kind, "id": item_id, "caller": caller, "again": again, "ine": if_none_exist,
             "prefer": prefer, "method": request.method}
        )  # fmt: skip

    @router.get("/counted")
    async def counted(request: Request, limit: int = 10) -> Response:  # a query parameter: FastAPI's
        return JSONResponse({"limit": limit})

    app = FastAPI()
    if flat:
        app.router.routes.extend(router.routes)
    else:
        app.include_router(router)

    @app.exception_handler(PermissionError)
    async def _refused(_request: Request, exc: PermissionError) -> Response:
        return JSONResponse({"error": str(exc)}, status_code=401)

    return app


def test_parameters_are_resolved_without_the_solver(monkeypatch: pytest.MonkeyPatch) -> None:
    app = _app()

    def solver(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("FastAPI's solver ran")

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", solver)
    calls.clear()
    with TestClient(app) as client:
        answer = client.post(
            "/items/Task/t1", headers={"Authorization": "Bearer x", "If-None-Exist": "identifier=a|b"}
        )
        assert answer.json() == {
            "kind": "Task", "id": "t1", "caller": "Bearer x", "again": "Bearer x", "ine": "identifier=a|b",
            "prefer": None, "method": "POST",
        }  # fmt: skip
        assert calls == ["who"]  # once per request, as FastAPI caches a dependency
        assert (
            client.post("/items/Task/t1", headers={"Authorization": "y", "X-Prefer": "minimal"}).json()[
                "prefer"
            ]
            == "minimal"
        )
        refused = client.post("/items/Task/t1")  # the dependency's error reaches the handlers
        assert (refused.status_code, refused.json()) == (401, {"error": "no credentials"})
        with pytest.raises(AssertionError, match="solver ran"):  # other endpoints keep FastAPI's
            client.get("/counted")


def test_the_route_index_calls_a_lean_route_without_fastapis_wrapping() -> None:
    """Dispatched by ``kit.route_index``, a lean route runs its ``direct_app``: same answers, and
    an error still reaches the application's exception handlers."""
    app = _app(flat=True)
    index_routes(app)

    async def wrapped(*_args: object) -> None:
        raise AssertionError("FastAPI's per-request wrapping ran")

    lean = [route for route in app.router.routes if isinstance(route, LeanRoute) and route.direct_app]
    assert [route.path for route in lean] == ["/items/{kind}/{item_id}"]
    lean[0].app = wrapped
    with TestClient(app) as client:
        answer = client.post("/items/Task/t1", headers={"Authorization": "Bearer x"})
        assert (answer.json()["caller"], answer.json()["id"]) == ("Bearer x", "t1")
        refused = client.post("/items/Task/t1")
        assert (refused.status_code, refused.json()) == (401, {"error": "no credentials"})
        assert client.get("/counted?limit=3").json() == {"limit": 3}  # not lean: FastAPI's route


def test_every_fhir_rest_route_is_lean_and_keeps_its_openapi_parameters() -> None:
    """The REST interactions and Bundles (FHIR R4 http.html) all skip the solver."""
    app = create_app()
    rest = [route for router in (endpoints.router, bundle_endpoints.router) for route in router.routes]
    assert len(rest) >= 13
    assert all(isinstance(route, LeanRoute) for route in rest)
    assert [r.path for r in rest if _sources(r.endpoint, set(r.param_convertors)) is None] == []
    create = app.openapi()["paths"]["/fhir/{res_type}"]["post"]
    assert {p["name"] for p in create["parameters"]} >= {"res_type", "if-none-exist", "prefer"}
