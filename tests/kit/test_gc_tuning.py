"""The serving process's collector settings (fhir_gateway/kit/gc_tuning.py)."""

from __future__ import annotations

import gc

from fastapi import FastAPI
from starlette.testclient import TestClient

from fhir_gateway.app import create_app
from fhir_gateway.kit.gc_tuning import YOUNG_THRESHOLD
from fhir_gateway.settings import Settings
from fhir_gateway.storage.database import Database


def test_started_app_freezes_its_objects_and_gives_them_back_when_it_stops(
    settings: Settings, database: Database
) -> None:
    before = gc.get_threshold()
    app: FastAPI = create_app(settings.model_copy(update={"tune_gc": True}), database)
    with TestClient(app) as client:
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[0] == YOUNG_THRESHOLD
        assert client.get("/health/live").status_code == 200
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before
