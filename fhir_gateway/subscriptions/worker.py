"""The notification worker: handshakes, deliveries, retries (issue 7; FHIR R4 subscription.html).

Runs inside ``fhir-gateway serve`` (a thread, by default) or alone as ``fhir-gateway worker``;
any number may run at once. Each round it leases a few subscriptions with work
(``subscription_repository.claim``: ``FOR UPDATE SKIP LOCKED`` on PostgreSQL), then for each:

- ``requested``: the handshake; success makes the Subscription ``active``, failure ``error``
  with the reason in ``Subscription.error``;
- ``active``: its waiting notifications in event order. A failure stops the subscription
  there (later events wait: order is kept) and schedules a retry after an exponential,
  jittered delay; after ``subscription_max_attempts`` failures in a row the Subscription goes
  to ``error`` (its notifications stay queued: a client that fixes its endpoint and sets
  the status back gets them). A 410 Gone turns it ``off``.

Delivery is at least once: a worker that dies after the endpoint answered but before
recording it delivers that event again; receivers deduplicate by ``X-FHIR-Event-Number``.
Status changes are written as new versions of the Subscription through the same service
layer as the REST API, by the worker's own trusted identity, and audited.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import httpx

from fhir_gateway.audit.events import AuditSink
from fhir_gateway.fhir import writes
from fhir_gateway.fhir.context import unit_of_work
from fhir_gateway.kit import jsonutil
from fhir_gateway.kit.errors import FhirError
from fhir_gateway.kit.timeutil import utcnow
from fhir_gateway.kit.worker_loop import WorkerLoop
from fhir_gateway.settings import Settings
from fhir_gateway.storage import client_repository, repository, subscription_repository
from fhir_gateway.storage.database import Database
from fhir_gateway.storage.subscription_repository import SubscriptionRow
from fhir_gateway.subscriptions import delivery
from fhir_gateway.subscriptions.endpoint_safety import (
    Resolver,
    UnsafeEndpoint,
    check_before_delivery,
    system_resolver,
)
from fhir_gateway.subscriptions.hooks import WORKER_ACCESS

log = logging.getLogger(__name__)
ACK_BATCH = 10  # deliveries recorded per transaction


def _now() -> datetime:
    return utcnow().replace(tzinfo=None)


def _same_request(mirror: SubscriptionRow | None, claimed: SubscriptionRow) -> bool:
    """The subscription still asks what it asked when claimed (same status, criteria, channel)."""
    if mirror is None:
        return False
    keys = ("status", "res_type", "criteria", "endpoint", "headers", "payload")
    return all(getattr(mirror, k) == getattr(claimed, k) for k in keys)


class SubscriptionWorker(WorkerLoop):
    """Delivers the outbox of one database; safe to run in several processes at once
    (``WorkerLoop``: in a thread of ``fhir-gateway serve`` or in ``fhir-gateway worker``)."""

    def __init__(
        self,
        database: Database,
        settings: Settings,
        *,
        audit_sink: AuditSink,
        http: httpx.Client | None = None,
        resolve: Resolver = system_resolver,
        jitter: Callable[[], float] = random.random,
        batch: int = 100,
        threads: int = 4,
    ) -> None:
        super().__init__(
            "subscription-worker",
            poll_seconds=settings.subscription_poll_seconds,
            join_seconds=settings.subscription_timeout_seconds + 5,
        )
        self.database = database
        self.settings = settings
        self.audit_sink = audit_sink
        self.http = http or httpx.Client(timeout=settings.subscription_timeout_seconds)
        self.resolve = resolve
        self.jitter = jitter
        self.batch = batch
        self.threads = threads
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="subscription-delivery")
        self.name = f"worker-{uuid.uuid4().hex[:12]}"

    # -- one round -------------------------------------------------------------------------
    def run_once(self, limit: int | None = None) -> int:
        """Serve the subscriptions that have work now, several at once; the HTTP calls made.

        Subscriptions are served in parallel threads (one slow endpoint does not hold the
        others back); the events of one subscription go one after the other, in order.
        """
        with self.database.transaction(write=True) as conn:
            claimed = subscription_repository.claim(
                conn, self.name, _now(), self.settings.subscription_lease_seconds, limit or self.threads
            )
        if len(claimed) == 1:
            return self._serve_and_release(claimed[0])
        return sum(self._pool.map(self._serve_and_release, claimed))

    def _serve_and_release(self, row: SubscriptionRow) -> int:
        try:
            return self._serve(row)
        except Exception:  # one subscription's trouble must not stop the others
            log.exception("subscription_delivery_failed", extra={"subscription": row.sub_id})
            return 0
        finally:
            with self.database.transaction(write=True) as conn:
                subscription_repository.release(conn, row.sub_id, self.name)

    def _serve(self, row: SubscriptionRow) -> int:
        if row.owner.verify and not self._client_active(row.owner.client_id):
            self._set_status(row, "off", "the client that created this Subscription was revoked")
            return 0
        refused = self._refused(row)
        if row.status == "requested":
            outcome = refused or delivery.handshake(self.http, row)
            if outcome.ok:
                self._set_status(row, "active", None)
            else:
                self._set_status(row, "error", f"handshake failed: {outcome.error}")
            return 1
        return self._deliver_pending(row, refused)

    def _deliver_pending(self, row: SubscriptionRow, refused: delivery.Outcome | None) -> int:
        """Deliver waiting events in order, recorded ``ACK_BATCH`` at a time with the lease
        renewed (a worker that dies re-sends at most that many: receivers drop them by event
        number). Stops when the lease could run out before the next call would end."""
        lease, timeout = self.settings.subscription_lease_seconds, self.settings.subscription_timeout_seconds
        deadline = time.monotonic() + lease - 1.5 * timeout
        with self.database.transaction() as conn:
            events = subscription_repository.pending_events(conn, row.sub_id, self.batch)
        delivered: list[int] = []
        calls = 0
        try:
            for event in events:
                if time.monotonic() > deadline:
                    break  # leave the rest to the next lease rather than outlive this one
                outcome = refused or delivery.notify(self.http, row, event, event.content)
                calls += 1
                if outcome.ok:
                    delivered.append(event.event_id)
                    if len(delivered) >= ACK_BATCH:
                        renewed_at = time.monotonic()
                        if not self._acknowledge(row, delivered):
                            return calls  # lease lost: another worker carries on
                        deadline = renewed_at + lease - 1.5 * timeout
                    continue
                if delivered:
                    self._acknowledge(row, delivered)
                if outcome.gone:
                    self._set_status(row, "off", outcome.error)
                else:
                    self._failed(row, event.event_id, outcome.error or "delivery failed")
                break
        finally:
            if delivered:
                self._acknowledge(row, delivered)
        return calls

    def _acknowledge(self, row: SubscriptionRow, delivered: list[int]) -> bool:
        """Record ``delivered`` and renew the lease; False when the lease was lost."""
        now = _now()
        until = now + timedelta(seconds=self.settings.subscription_lease_seconds)
        with self.database.transaction(write=True) as conn:
            kept = subscription_repository.mark_delivered(conn, row.sub_id, delivered, now, self.name, until)
        delivered.clear()
        return kept

    # -- outcomes ----------------------------------------------------------------------------
    def _refused(self, row: SubscriptionRow) -> delivery.Outcome | None:
        """A failure when the endpoint's addresses, resolved now, may not be called."""
        try:
            check_before_delivery(
                row.endpoint,
                production=self.settings.env == "production",
                allow_private=self.settings.subscription_allow_private_endpoints,
                resolve=self.resolve,
            )
        except UnsafeEndpoint as exc:
            return delivery.Outcome(False, error=f"endpoint refused: {exc}")
        return None

    def _failed(self, row: SubscriptionRow, event_id: int, error: str) -> None:
        retry_at = _now() + timedelta(seconds=self.backoff(row.failures + 1))
        with self.database.transaction(write=True) as conn:
            failures = subscription_repository.record_failure(conn, row.sub_id, event_id, error, retry_at)
        log.warning("subscription_delivery_retry", extra={"subscription": row.sub_id, "failures": failures})
        if failures >= self.settings.subscription_max_attempts:
            self._set_status(row, "error", f"gave up after {failures} failed attempts: {error}")

    def backoff(self, failures: int) -> float:
        """Seconds before retry number ``failures``: doubling, capped, jittered (50-100 %)."""
        base = self.settings.subscription_retry_seconds * 2 ** max(failures - 1, 0)
        return float(min(base, self.settings.subscription_retry_max_seconds) * (0.5 + self.jitter() / 2))

    def _set_status(self, row: SubscriptionRow, status: str, error: str | None) -> None:
        """A new version of the Subscription with ``status`` (and ``error``), if it did not change."""
        try:
            with unit_of_work(
                self.database, self.settings, WORKER_ACCESS, write=True, audit_sink=self.audit_sink
            ) as ctx:
                current = repository.get_current(ctx.conn, "Subscription", row.sub_id, for_update=True)
                mirror = subscription_repository.get(ctx.conn, row.sub_id)
                if current is None or current.content is None or not _same_request(mirror, row):
                    return  # deleted or changed by its client meanwhile: that change decides
                body = jsonutil.loads(current.content)
                body["status"] = status
                if error:
                    body["error"] = error[:1000]
                else:
                    body.pop("error", None)
                writes.update(ctx, "Subscription", row.sub_id, body, current.version)
        except FhirError as exc:
            reason = {"subscription": row.sub_id, "reason": str(exc)}
            log.warning("subscription_status_not_recorded", extra=reason)

    def _client_active(self, client_id: str) -> bool:
        with self.database.transaction() as conn:
            return client_repository.is_active(conn, client_id)

    def close(self) -> None:
        """Once stopped: the delivery threads end and the HTTP client closes."""
        self._pool.shutdown(wait=True)
        self.http.close()
