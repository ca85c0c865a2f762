"""create_app(settings) -> FastAPI: wiring only (DESIGN.md, The shape)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from fhir_gateway import __version__
from fhir_gateway.audit.process_writer import AuditProcessWriter
from fhir_gateway.audit.writer import AuditWriter
from fhir_gateway.auth.authorization_server import GatewayAuthorizationServer, allow_plain_http_in_development
from fhir_gateway.auth.keys import SigningKeys
from fhir_gateway.auth.paging_key import PagingKey
from fhir_gateway.auth.validation import TokenValidator
from fhir_gateway.errors_http import install_error_handlers
from fhir_gateway.front import GatewayApp
from fhir_gateway.kit.gc_tuning import restore_at_shutdown, settle_after_startup
from fhir_gateway.kit.ratelimit import RateLimiter
from fhir_gateway.kit.route_index import index_routes
from fhir_gateway.observability.access_log import ACCESS_LOG
from fhir_gateway.observability.logs import configure_logging
from fhir_gateway.settings import Settings, get_settings
from fhir_gateway.storage.database import Database
from fhir_gateway.storage.statistics import keep_sqlite_statistics
from fhir_gateway.validation.profiles import configure as configure_profiles


def audit_writer_for(settings: Settings, database: Database) -> AuditWriter | AuditProcessWriter:
    """The audit trail's writer of ``settings.audit_mode`` (README, Audit); ``batched`` for an
    in-memory SQLite database, which another process cannot open."""
    if settings.audit_mode == "process" and not database.in_memory:
        return AuditProcessWriter(
            database.url, interval=settings.audit_flush_seconds, log_level=settings.log_level
        )
    return AuditWriter(database, mode=settings.audit_mode, interval=settings.audit_flush_seconds)


def create_app(settings: Settings | None = None, database: Database | None = None) -> FastAPI:
    """The gateway application for ``settings`` (default: from the environment)."""
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    configure_profiles(settings.enforce_profiles, settings.profiles_dir)
    database = database or Database(settings.database_url, settings.database_pool_size)
    audit_writer = audit_writer_for(settings, database)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        worker = None
        await audit_writer.start()
        if settings.subscription_worker_in_serve:
            from fhir_gateway.subscriptions.worker import SubscriptionWorker

            worker = SubscriptionWorker(database, settings, audit_sink=audit_writer.submit)
            worker.start()
        exporter = None
        if settings.export_worker_in_serve:
            from fhir_gateway.exports.worker import ExportWorker

            exporter = ExportWorker(database, settings, audit_sink=audit_writer.submit)
            exporter.start()
        statistics = None
        if database.dialect == "sqlite" and settings.sqlite_analyze_interval_seconds > 0:
            statistics = asyncio.create_task(
                keep_sqlite_statistics(database, settings.sqlite_analyze_interval_seconds)
            )
        if settings.tune_gc:
            settle_after_startup()
        yield
        if statistics is not None:
            statistics.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await statistics
        if exporter is not None:
            exporter.stop()
        if worker is not None:
            worker.stop()
        if settings.tune_gc:
            restore_at_shutdown()
        await audit_writer.aclose()
        ACCESS_LOG.flush()
        await database.dispose_async()
        database.dispose()

    app = GatewayApp(
        title="fhir-gateway",
        version=__version__,
        description="FHIR R4 backend for care-pathway coordination",
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
        # metrics are Prometheus' (/metrics); FastAPI's OpenTelemetry hooks looked up their
        # providers on every request for nothing
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.database = database
    app.state.audit_writer = audit_writer
    app.state.signing_keys = SigningKeys(database)
    app.state.paging_key = PagingKey(database)
    app.state.token_validator = TokenValidator(settings, database, app.state.signing_keys)
    allow_plain_http_in_development(settings)
    app.state.authorization_server = GatewayAuthorizationServer(
        database, settings, app.state.signing_keys, app.state.token_validator
    )
    app.state.rate_limiter = RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst)
    install_error_handlers(app)

    from fhir_gateway.auth.endpoints import router as auth_router
    from fhir_gateway.fhir.bundle_endpoints import router as bundle_router
    from fhir_gateway.fhir.capability import router as capability_router
    from fhir_gateway.fhir.endpoints import router as fhir_router
    from fhir_gateway.fhir.operations.router import router as operations_router
    from fhir_gateway.health import router as health_router
    from fhir_gateway.observability.metrics import router as metrics_router

    for router in (
        health_router,
        metrics_router,
        auth_router,
        capability_router,
        operations_router,
        bundle_router,
        fhir_router,
    ):
        # The routers' own routes, in this order, flat in the application's route list: an
        # ``include_router`` wrapper per router costs a second matching pass per request.
        app.router.routes.extend(router.routes)
    app.route_index = index_routes(app)  # its lean routes served directly (``front``)
    return app
