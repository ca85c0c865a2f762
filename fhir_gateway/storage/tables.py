"""The resource store and its search index (DESIGN.md, Storage).

One ``resource`` row per logical resource (current version, JSON text including ``meta``, and
the method that stored it), an append-only ``resource_history`` with every earlier version (each
version is in exactly one of the two: migration 0012), and one index table per search
parameter kind (FHIR R4 search.html#ptypes), rewritten in the same transaction as the
resource. Dates are stored as naive UTC ``DateTime`` so that both SQLite and PostgreSQL
compare them the same way.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    literal_column,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

TYPE_LEN = 64
ID_LEN = 64

resource = Table(
    "resource",
    metadata,
    Column("res_type", String(TYPE_LEN), primary_key=True),
    Column("res_id", String(ID_LEN), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("last_updated", DateTime, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("content", Text, nullable=False),
    Column("patient_id", String(ID_LEN), nullable=True),
    # POST, PUT, PATCH or DELETE: the current version's history entry (``request.method``)
    Column("method", String(8), nullable=False, server_default="POST"),  # migration 0012
    # the token values as terms, for a search of one person's rows (``search.row_tokens``,
    # migration 0014); NULL: the search tests the ``idx_token`` rows
    Column("tokens", Text, nullable=True),
    Index("ix_resource_type_patient", "res_type", "patient_id", "res_id"),  # migration 0011
    Index("ix_resource_type_updated", "res_type", "last_updated"),
)

resource_history = Table(
    "resource_history",
    metadata,
    Column("res_type", String(TYPE_LEN), primary_key=True),
    Column("res_id", String(ID_LEN), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("last_updated", DateTime, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("method", String(8), nullable=False),
    Column("content", Text, nullable=True),
    Column("patient_id", String(ID_LEN), nullable=True),
    Index("ix_resource_history_updated", "last_updated"),
    Index("ix_resource_history_type_updated", "res_type", "last_updated"),
)


def _index_table(name: str, *value_columns: Column[object], indexes: list[tuple[str, ...]]) -> Table:
    """An index table: (res_type, res_id, param) plus the kind's value columns."""
    table = Table(
        name,
        metadata,
        Column("res_type", String(TYPE_LEN), nullable=False),
        Column("res_id", String(ID_LEN), nullable=False),
        Column("param", String(64), nullable=False),
        *value_columns,
        Index(f"ix_{name}_owner", "res_type", "res_id"),
    )
    for cols in indexes:
        Index(f"ix_{name}_{'_'.join(cols)}", *(table.c[c] for c in cols))
    return table


idx_token = _index_table(
    "idx_token",
    Column("system", String(255), nullable=True),
    Column("code", String(255), nullable=True),
    Column("display", String(255), nullable=True),
    indexes=[("res_type", "param", "code", "system")],
)

idx_string = _index_table(
    "idx_string",
    Column("value_norm", String(255), nullable=False),
    Column("value_exact", String(255), nullable=False),
    indexes=[("res_type", "param", "value_norm")],
)

idx_date = _index_table(
    "idx_date",
    Column("low", DateTime, nullable=True),
    Column("high", DateTime, nullable=True),
    indexes=[("res_type", "param", "low"), ("res_type", "param", "high")],
)

idx_reference = _index_table(
    "idx_reference",
    Column("target_type", String(TYPE_LEN), nullable=True),
    Column("target_id", String(ID_LEN), nullable=True),
    Column("url", String(512), nullable=True),
    indexes=[("target_id", "param", "res_type")],
)

idx_quantity = _index_table(
    "idx_quantity",
    Column("value", Float, nullable=True),
    Column("system", String(255), nullable=True),
    Column("code", String(255), nullable=True),
    indexes=[("res_type", "param", "value")],
)

idx_number = _index_table(
    "idx_number",
    Column("value", Float, nullable=True),
    indexes=[("res_type", "param", "value")],
)

idx_uri = _index_table(
    "idx_uri",
    Column("value", String(512), nullable=False),
    indexes=[("res_type", "param", "value")],
)

# The token values of the AuditEvents the gateway writes, one row per event: a JSON array of
# terms (``search.audit_terms``) instead of about eleven ``idx_token`` rows. Other AuditEvents
# keep their ``idx_token`` rows; a search on a token parameter of AuditEvent reads both.
audit_terms = Table(
    "audit_terms",
    metadata,
    Column("res_id", String(ID_LEN), primary_key=True),
    Column("terms", Text, nullable=False),
    # PostgreSQL: the event's reference and ``date`` parameters, not in ``idx_reference`` and
    # ``idx_date`` (``storage.audit_refs``, migration 0013); NULL on SQLite
    Column("refs", Text, nullable=True),
    Column("recorded_low", DateTime, nullable=True),
    Column("recorded_high", DateTime, nullable=True),
)


def refs_array(refs: Any) -> Any:
    """The keys of an ``audit_terms.refs`` column as a text array (PostgreSQL): the expression of
    its GIN index, which a query must repeat to use it (``storage.audit_refs.SEP``)."""
    return func.string_to_array(refs, literal_column("E'\\x1f'"))


# on PostgreSQL only: SQLite's AuditEvents keep generic index rows (``storage.audit_refs``)
POSTGRESQL_ONLY_INDEXES = (
    Index("ix_audit_terms_refs", refs_array(audit_terms.c.refs), postgresql_using="gin"),
    Index("ix_audit_terms_recorded_low", audit_terms.c.recorded_low),
    Index("ix_audit_terms_recorded_high", audit_terms.c.recorded_high),
)
for _index in POSTGRESQL_ONLY_INDEXES:
    _index.ddl_if(dialect="postgresql")

INDEX_TABLES: dict[str, Table] = {
    "token": idx_token,
    "string": idx_string,
    "date": idx_date,
    "reference": idx_reference,
    "quantity": idx_quantity,
    "number": idx_number,
    "uri": idx_uri,
}


@cache
def shared_alias(table: Table, depth: int) -> Any:
    """A named alias of ``table`` for sub-queries nested ``depth`` levels deep, built once.

    Sibling EXISTS sub-queries may share one alias; a nested one needs another (a FROM of
    the enclosing query would be correlated away). Building aliases per query costs more
    than running the query; these also let the consent filter on them be cached.
    """
    alias = table.alias(f"{table.name}_{depth}")
    _SHARED_ALIASES.add(id(alias))
    return alias


def is_shared(selectable: Any) -> bool:
    """True for the tables themselves and the aliases of ``shared_alias``."""
    return selectable is resource or selectable is resource_history or id(selectable) in _SHARED_ALIASES


_SHARED_ALIASES: set[int] = set()
