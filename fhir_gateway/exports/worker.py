"""The export worker: runs ``$export`` jobs and writes their NDJSON files (issue 8).

Runs inside ``fhir-gateway serve`` (a thread) or in ``fhir-gateway worker``; any number may
run at once. Each round it purges expired jobs, then leases the oldest waiting job
(``export_repository.claim``) and exports it type by type, ``export_page_size`` resources per
query in ``res_id`` order (keyset: memory stays flat whatever the size), each page in its
own short transaction:

- as the requester: the job's AccessContext, a revoked client stops the job (its check runs
  in every page's transaction), and the rows are filtered by the very SQL visibility of a
  REST search (scopes and consent, evaluated now, not at kick-off);
- as of the kick-off: only resources last changed at or before the transaction time (and
  after ``_since``) are exported; those changed since come with the next ``_since`` export;
- Patient level: the persons' compartments; Group level: the compartments of the Group's
  members (``Group.member.entity``, inactive members left out), read when the job runs.

After each page the lease is renewed; a cancelled job or a lost lease stops the worker (a
cancelled job's files are deleted). The job is audited once, when it ends (completed or
failed), by an AuditEvent of the requester.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from fhir_gateway.audit.events import AuditItem, AuditSink, audit_event_for
from fhir_gateway.auth.context import AccessContext
from fhir_gateway.auth.validation import ensure_client_active
from fhir_gateway.exports.files import NdjsonFiles, remove_job_files, remove_other_attempts
from fhir_gateway.exports.owner import owner_access
from fhir_gateway.fhir.context import Ctx
from fhir_gateway.kit import jsonutil
from fhir_gateway.kit.errors import FhirError, NotFound
from fhir_gateway.kit.query_string import urlencode
from fhir_gateway.kit.timeutil import utcnow
from fhir_gateway.kit.worker_loop import WorkerLoop
from fhir_gateway.settings import Settings
from fhir_gateway.storage import compartment_repository, export_repository, repository
from fhir_gateway.storage.database import Database
from fhir_gateway.storage.export_repository import ExportJob
from fhir_gateway.storage.tables import resource

log = logging.getLogger(__name__)
MEMBER_CHUNK = 500  # Group members per query (bound parameters stay few)


class _Stopped(Exception):
    """The job was cancelled or another worker took it over."""


def _now() -> datetime:
    return utcnow().replace(tzinfo=None)


def group_members(group: dict[str, Any]) -> list[str]:
    """Ids of the Patients of ``Group.member`` (FHIR R4 group.html), inactive members left out."""
    ids: list[str] = []
    for member in group.get("member") or []:
        if not isinstance(member, dict) or member.get("inactive") is True:
            continue
        reference = str((member.get("entity") or {}).get("reference") or "")
        kind, _, res_id = reference.rpartition("/")
        if kind.endswith("Patient") and res_id:
            ids.append(res_id)
    return sorted(set(ids))


class ExportWorker(WorkerLoop):
    """Runs the export jobs of one database; safe to run in several processes at once
    (``WorkerLoop``: in a thread of ``fhir-gateway serve`` or in ``fhir-gateway worker``)."""

    def __init__(self, database: Database, settings: Settings, *, audit_sink: AuditSink) -> None:
        super().__init__("export-worker", poll_seconds=1.0, join_seconds=30)
        self.database = database
        self.settings = settings
        self.audit_sink = audit_sink
        self.name = f"exporter-{uuid.uuid4().hex[:12]}"

    def run_once(self) -> int:
        """Purge expired jobs, then run one waiting job to its end; the number of jobs run."""
        self.purge()
        with self.database.transaction(write=True) as conn:
            job = export_repository.claim(conn, self.name, _now(), self.settings.export_lease_seconds)
        if job is None:
            return 0
        self._run(job)
        return 1

    def purge(self) -> None:
        """Drop finished jobs past their ``expires_at`` and their files."""
        with self.database.transaction(write=True) as conn:
            expired = export_repository.expired(conn, _now())
            export_repository.remove(conn, expired)
        for job_id in expired:
            remove_job_files(self.settings.export_path, job_id)

    # -- one job ---------------------------------------------------------------------------
    def _run(self, job: ExportJob) -> None:
        access = owner_access(job.owner)
        attempt = uuid.uuid4().hex
        files = NdjsonFiles(
            self.settings.export_path / job.job_id / attempt, self.settings.export_file_max_resources
        )
        events: list[AuditItem] = []
        exported = 0
        try:
            for res_type, contents in self._pages(job, access, events):
                files.write(res_type, contents)
                exported += len(contents)
                self._renew(job, exported, f"{res_type}: {exported} resources exported")
            files.close()
            self._finish(job, "completed", output=files.outputs, attempt=attempt, exported=exported)
            remove_other_attempts(self.settings.export_path, job.job_id, attempt)
            self._audit(job, access, events, ok=True, exported=exported)
        except _Stopped:
            files.close()
            self._after_stop(job)
        except Exception as exc:  # the job fails, the worker goes on
            files.close()
            reason = exc.issues[0].diagnostics if isinstance(exc, FhirError) else "internal error"
            if not isinstance(exc, FhirError):
                log.exception("export_job_failed", extra={"job": job.job_id})
            self._finish(job, "failed", error=reason)
            remove_job_files(self.settings.export_path, job.job_id)
            self._audit(job, access, events, ok=False, exported=exported)
        finally:
            self.audit_sink(events)

    def _pages(
        self, job: ExportJob, access: AccessContext, events: list[AuditItem]
    ) -> Iterator[tuple[str, list[str]]]:
        """(type, contents) pages of the job, read as its requester."""
        members = self._members(job, access, events) if job.level == "group" else None
        chunks: list[list[str] | None] = (
            [members[i : i + MEMBER_CHUNK] for i in range(0, len(members), MEMBER_CHUNK)]
            if members is not None
            else [None]
        )
        for res_type in job.types:
            for chunk in chunks:
                after: str | None = None
                while True:
                    with self.database.transaction() as conn:
                        ctx = self._ctx(conn, access, events)
                        rows = compartment_repository.export_page(
                            conn,
                            res_type,
                            ctx.visible(resource, res_type),
                            patients=chunk,
                            in_compartment=job.level != "system",
                            since=job.since,
                            until=job.transaction_time,
                            after_id=after,
                            limit=self.settings.export_page_size,
                        )
                    if not rows:
                        break
                    yield res_type, [content for _id, content in rows]
                    if len(rows) < self.settings.export_page_size:
                        break
                    after = rows[-1][0]

    def _members(self, job: ExportJob, access: AccessContext, events: list[AuditItem]) -> list[str]:
        assert job.group_id is not None
        with self.database.transaction() as conn:
            ctx = self._ctx(conn, access, events)
            group = repository.get_current(
                conn, "Group", job.group_id, visible=ctx.visible(resource, "Group")
            )
        if group is None or group.deleted or group.content is None:
            raise NotFound(f"Group/{job.group_id} is not known (any more)")
        return group_members(jsonutil.loads(group.content))

    def _ctx(self, conn: Any, access: AccessContext, events: list[AuditItem]) -> Ctx:
        if access.verify_client:
            ensure_client_active(conn, access.client_id)  # a revoked client's export stops here
        return Ctx(conn, access, self.settings, events)

    def _renew(self, job: ExportJob, exported: int, progress: str) -> None:
        until = _now() + timedelta(seconds=self.settings.export_lease_seconds)
        with self.database.transaction(write=True) as conn:
            held = export_repository.renew(conn, job.job_id, self.name, until, exported, progress)
        if not held:
            raise _Stopped

    def _finish(self, job: ExportJob, status: str, **values: Any) -> None:
        with self.database.transaction(write=True) as conn:
            export_repository.finish(
                conn,
                job.job_id,
                self.name,
                status=status,
                now=_now(),
                keep_seconds=self.settings.export_retention_seconds,
                **values,
            )

    def _after_stop(self, job: ExportJob) -> None:
        with self.database.transaction() as conn:
            current = export_repository.get(conn, job.job_id)
        if current is None or current.status == "cancelled":
            remove_job_files(self.settings.export_path, job.job_id)

    def _audit(
        self, job: ExportJob, access: AccessContext, events: list[AuditItem], *, ok: bool, exported: int
    ) -> None:
        """One AuditEvent for the job: who exported what (level, types, since), and how many."""
        query = [("_operation", "export"), ("level", job.level), ("_type", ",".join(job.types))]
        if job.since is not None:
            query.append(("_since", job.since.isoformat()))
        query.append(("exported", str(exported)))
        res_type, res_id = ("Group", job.group_id) if job.level == "group" else (None, None)
        decided_by = "trusted client" if access.trusted else None
        events.append(
            audit_event_for(
                access, "operation", res_type, res_id, None, ok, decided_by, urlencode(query),
                outcome=None if ok else "8",
            )
        )  # fmt: skip
