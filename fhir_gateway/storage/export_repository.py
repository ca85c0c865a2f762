"""SQL of bulk export jobs (issue 8): kick-off, status, cancel, leases, purge.

Workers ``claim`` one job at a time (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so that
several workers never take the same one) and hold it by a lease renewed after every page;
a worker that dies leaves its job to another when the lease ends (the job starts over).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, delete, insert, or_, select, update

from fhir_gateway.storage.export_tables import export_job

job = export_job
RUNNABLE = ("accepted", "in-progress")


@dataclass(frozen=True)
class ExportJob:
    """One export job as stored."""

    job_id: str
    owner_client: str
    owner: dict[str, Any]
    level: str
    group_id: str | None
    types: tuple[str, ...]
    since: datetime | None
    transaction_time: datetime
    request_url: str
    status: str
    progress: str | None
    error: str | None
    output: tuple[dict[str, Any], ...]
    attempt: str | None
    exported: int
    expires_at: datetime | None


def _job(r: Any) -> ExportJob:
    return ExportJob(
        r.job_id,
        r.owner_client,
        json.loads(r.owner),
        r.level,
        r.group_id,
        tuple(json.loads(r.types)),
        r.since,
        r.transaction_time,
        r.request_url,
        r.status,
        r.progress,
        r.error,
        tuple(json.loads(r.output)) if r.output else (),
        r.attempt,
        r.exported,
        r.expires_at,
    )


def create(
    conn: Connection,
    job_id: str,
    *,
    owner_client: str,
    owner: dict[str, Any],
    level: str,
    group_id: str | None,
    types: list[str],
    since: datetime | None,
    transaction_time: datetime,
    request_url: str,
) -> None:
    conn.execute(
        insert(job).values(
            job_id=job_id,
            owner_client=owner_client,
            owner=json.dumps(owner),
            level=level,
            group_id=group_id,
            types=json.dumps(types),
            since=since,
            transaction_time=transaction_time,
            request_url=request_url,
            status="accepted",
            exported=0,
        )
    )


def get(conn: Connection, job_id: str) -> ExportJob | None:
    found = conn.execute(select(job).where(job.c.job_id == job_id)).first()
    return _job(found) if found else None


def cancel(conn: Connection, job_id: str, now: datetime, keep_seconds: float) -> None:
    """The job is cancelled: a worker running it stops at its next page; the row goes later."""
    conn.execute(
        update(job)
        .where(job.c.job_id == job_id)
        .values(status="cancelled", finished_at=now, expires_at=now + timedelta(seconds=keep_seconds))
    )


def claim(conn: Connection, worker: str, now: datetime, lease_seconds: float) -> ExportJob | None:
    """Lease the oldest job waiting (or whose worker's lease ended); None when there is none."""
    candidate = conn.execute(
        select(job.c.job_id)
        .where(job.c.status.in_(RUNNABLE), or_(job.c.lease_until.is_(None), job.c.lease_until < now))
        .order_by(job.c.transaction_time)
        .limit(1)
        .with_for_update(skip_locked=True)
    ).first()
    if candidate is None:
        return None
    conn.execute(
        update(job)
        .where(job.c.job_id == candidate.job_id)
        .values(
            status="in-progress",
            lease_owner=worker,
            lease_until=now + timedelta(seconds=lease_seconds),
            exported=0,
            progress=None,
        )
    )
    return get(conn, candidate.job_id)


def renew(conn: Connection, job_id: str, worker: str, until: datetime, exported: int, progress: str) -> bool:
    """Record progress and extend the lease; False when the job was cancelled or taken over."""
    held = and_(job.c.job_id == job_id, job.c.lease_owner == worker, job.c.status == "in-progress")
    result = conn.execute(
        update(job).where(held).values(lease_until=until, exported=exported, progress=progress[:255])
    )
    return bool(result.rowcount)


def finish(
    conn: Connection,
    job_id: str,
    worker: str,
    *,
    status: str,
    now: datetime,
    keep_seconds: float,
    output: list[dict[str, Any]] | None = None,
    attempt: str | None = None,
    exported: int = 0,
    error: str | None = None,
) -> bool:
    """The job is completed (its manifest) or failed (its error), if this worker still holds it."""
    held = and_(job.c.job_id == job_id, job.c.lease_owner == worker, job.c.status == "in-progress")
    result = conn.execute(
        update(job)
        .where(held)
        .values(
            status=status,
            output=json.dumps(output or []),
            attempt=attempt,
            exported=exported,
            error=error[:2000] if error else None,
            lease_owner=None,
            lease_until=None,
            finished_at=now,
            expires_at=now + timedelta(seconds=keep_seconds),
        )
    )
    return bool(result.rowcount)


def expired(conn: Connection, now: datetime, limit: int = 100) -> list[str]:
    """Jobs whose files and status may go (finished and past ``expires_at``)."""
    rows = conn.execute(
        select(job.c.job_id)
        .where(job.c.expires_at.is_not(None), job.c.expires_at < now, job.c.status.not_in(RUNNABLE))
        .limit(limit)
    )
    return [r.job_id for r in rows]


def remove(conn: Connection, job_ids: list[str]) -> None:
    if job_ids:
        conn.execute(delete(job).where(job.c.job_id.in_(job_ids)))
