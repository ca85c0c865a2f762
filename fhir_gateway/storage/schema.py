"""The complete schema: every table module registered on the shared ``metadata``."""

from __future__ import annotations

from sqlalchemy import MetaData

from fhir_gateway.storage import tables


def full_metadata() -> MetaData:
    """``metadata`` with every table of the gateway (resources, index, auth, consent)."""
    import importlib

    for module in ("auth_tables", "consent_tables", "outbox_tables", "export_tables"):
        try:
            importlib.import_module(f"fhir_gateway.storage.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"fhir_gateway.storage.{module}":
                raise
    return tables.metadata
