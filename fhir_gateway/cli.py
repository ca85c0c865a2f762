"""The ``fhir-gateway`` command: serve, migrate, clients, import, export (DESIGN.md, The shape)."""

from __future__ import annotations

import importlib

import typer

from fhir_gateway.observability.logs import configure_logging
from fhir_gateway.settings import get_settings

app = typer.Typer(help="fhir-gateway: FHIR R4 backend for care-pathway coordination", no_args_is_help=True)


def _register_subcommands() -> None:
    from fhir_gateway.mapping.commands import export_command, import_command

    if not any(c.name == "import" for c in app.registered_commands):
        app.command("import")(import_command)
        app.command("export")(export_command)
    try:
        auth_cli = importlib.import_module("fhir_gateway.auth.cli")
    except ModuleNotFoundError as exc:
        if exc.name != "fhir_gateway.auth.cli":
            raise
        return
    app.add_typer(auth_cli.clients_app, name="clients")
    if hasattr(auth_cli, "keys_app"):
        app.add_typer(auth_cli.keys_app, name="keys")


@app.command()
def migrate(revision: str = typer.Argument("head", help="target Alembic revision")) -> None:
    """Bring the database schema up to date (Alembic)."""
    from fhir_gateway.storage.database import Database
    from fhir_gateway.storage.migrate import upgrade

    settings = get_settings()
    database = Database(settings.database_url)
    upgrade(database, revision)
    typer.echo(f"database at {revision}: {_safe_url(settings.database_url)}")


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="interface to listen on"),
    port: int = typer.Option(8000, help="TCP port"),
    workers: int = typer.Option(1, help="uvicorn worker processes"),
    no_migrate: bool = typer.Option(False, "--no-migrate", help="do not upgrade the schema on start"),
) -> None:
    """Start the FHIR server (base URL /fhir)."""
    import os

    import uvicorn

    from fhir_gateway.startup import prepare

    if "FHIR_GATEWAY_BASE_URL" not in os.environ:  # links and token audience follow --host/--port
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        os.environ["FHIR_GATEWAY_BASE_URL"] = f"http://{shown}:{port}"
        get_settings.cache_clear()
    settings = get_settings()
    configure_logging(settings.log_level)
    _refuse_if(prepare(settings, migrate=not no_migrate))
    uvicorn.run(
        "fhir_gateway.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,  # uvicorn logs through the gateway's JSON handler
        log_level=settings.log_level.lower(),
        access_log=False,
    )


@app.command()
def worker() -> None:
    """Deliver Subscription notifications and run bulk $export jobs (run as many as needed).

    SIGINT or SIGTERM stops it once its current rounds end; SIGUSR1 writes every thread's
    stack to stderr (``kit.worker_signals``).
    """
    from fhir_gateway.kit.worker_signals import block_worker_signals, run_until_signalled

    block_worker_signals()  # before any thread starts (the loops', the delivery pool's)

    from fhir_gateway.audit.writer import AuditWriter
    from fhir_gateway.auth.bootstrap import check_production_settings
    from fhir_gateway.exports.worker import ExportWorker
    from fhir_gateway.storage.database import Database
    from fhir_gateway.subscriptions.worker import SubscriptionWorker

    settings = get_settings()
    if settings.env == "production":
        _refuse_if(check_production_settings(settings))
    configure_logging(settings.log_level)
    database = Database(settings.database_url, 3)
    audit_writer = AuditWriter(database, mode="sync")
    delivery = SubscriptionWorker(database, settings, audit_sink=audit_writer.submit)
    exporter = ExportWorker(database, settings, audit_sink=audit_writer.submit)
    typer.echo(f"subscription worker {delivery.name}, export worker {exporter.name}")
    typer.echo(f"on {_safe_url(settings.database_url)}")

    def release() -> None:
        audit_writer.close()
        database.dispose()

    received = run_until_signalled([delivery, exporter], release)
    typer.echo(f"stopped ({received.name})")


def _refuse_if(problems: list[str]) -> None:
    """Print each problem and exit with status 2 when there is any."""
    for problem in problems:
        typer.echo(f"refusing to start: {problem}", err=True)
    if problems:
        raise typer.Exit(2)


def _safe_url(url: str) -> str:
    """The database URL without its password."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def main() -> None:
    _register_subcommands()
    app(prog_name="fhir-gateway")


if __name__ == "__main__":
    main()
