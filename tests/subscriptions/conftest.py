"""Fixtures of the subscription tests: faster retries, a worker on the test database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fhir_gateway.settings import Settings
from fhir_gateway.storage.database import Database
from fhir_gateway.subscriptions.worker import SubscriptionWorker
from tests.subscriptions.support import make_worker


@pytest.fixture
def settings(database: Database) -> Settings:
    return Settings(
        database_url=database.url,
        base_url="http://testserver",
        env="development",
        audit_mode="sync",
        subscription_worker_in_serve=False,
        export_worker_in_serve=False,
        subscription_retry_seconds=0.0,  # a failed delivery may be retried on the next round
        subscription_max_attempts=3,
    )


@pytest.fixture
def worker(database: Database, settings: Settings) -> Iterator[SubscriptionWorker]:
    delivering = make_worker(database, settings)
    yield delivering
    delivering.stop()
