"""The table of bulk export jobs (issue 8; FHIR Bulk Data Access IG v2, export.html).

One row per ``$export`` kick-off: who asked (the OAuth client and the AccessContext it had,
as JSON, so that the worker exports with the requester's scopes and the persons' consent at
export time), what (level, Group, types, ``_since``), the transaction time (the moment of the
kick-off: nothing changed after it is exported), the state (accepted, in-progress,
completed, failed, cancelled), the worker's lease, and the manifest of the files written.
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Index, Integer, String, Table, Text

from fhir_gateway.storage.tables import ID_LEN, metadata

export_job = Table(
    "export_job",
    metadata,
    Column("job_id", String(ID_LEN), primary_key=True),
    Column("owner_client", String(255), nullable=False),
    Column("owner", Text, nullable=False),  # JSON: the requester's AccessContext
    Column("level", String(16), nullable=False),  # system | patient | group
    Column("group_id", String(ID_LEN), nullable=True),
    Column("types", Text, nullable=False),  # JSON list of resource types
    Column("since", DateTime, nullable=True),
    Column("transaction_time", DateTime, nullable=False),
    Column("request_url", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("progress", String(255), nullable=True),
    Column("error", Text, nullable=True),
    Column("output", Text, nullable=True),  # JSON list of {type, file, count}
    Column("attempt", String(64), nullable=True),  # folder of the attempt that wrote the files
    Column("exported", Integer, nullable=False, default=0),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_until", DateTime, nullable=True),
    Column("finished_at", DateTime, nullable=True),
    Column("expires_at", DateTime, nullable=True),
    Index("ix_export_job_status", "status", "lease_until"),
    Index("ix_export_job_expires", "expires_at"),
)
