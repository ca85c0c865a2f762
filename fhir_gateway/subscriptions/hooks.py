"""The write path's side of subscriptions: Subscription writes, and the outbox (issue 7).

Called by ``fhir.writes`` inside the write transaction (DESIGN.md, A request's way):

- ``prepare``: before a Subscription is stored. Its criteria and channel are checked, it
  must belong to the caller, and a client cannot make it ``active`` itself: a new or changed
  Subscription is ``requested`` until the worker's handshake succeeds (FHIR R4
  subscription.html#lifecycle). ``off`` is the client's to set.
- ``after_store``: mirror a Subscription in the ``subscription`` table, then queue one
  notification per active subscription whose criteria the new version matches **as its
  owner would search it**: the owner's SMART scopes and the person's consent at the moment
  of the change decide, with the very SQL of the REST search. No change commits without its
  notifications, no notification exists without its change. The versions stored together
  (an import's batch) are matched together, by id: one query per subscription and batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qsl

from fhir_gateway.auth.context import AccessContext
from fhir_gateway.auth.scopes import parse_scopes
from fhir_gateway.consent import visibility
from fhir_gateway.fhir.context import Ctx
from fhir_gateway.kit.errors import Forbidden
from fhir_gateway.kit.timeutil import utcnow
from fhir_gateway.search.parser import parse_search
from fhir_gateway.storage import client_repository, subscription_repository
from fhir_gateway.storage.search_repository import find_ids
from fhir_gateway.storage.subscription_repository import SubscriptionOwner, SubscriptionRow
from fhir_gateway.subscriptions.active import active_subscriptions, known_active
from fhir_gateway.subscriptions.endpoint_safety import check_endpoint_url
from fhir_gateway.subscriptions.model import SubscriptionSpec, parse_subscription

SUBSCRIPTION = "Subscription"
WORKER_CLIENT_ID = "fhir-gateway:subscription-worker"
WORKER_ACCESS = AccessContext(
    client_id=WORKER_CLIENT_ID, scopes=parse_scopes("system/Subscription.ru"), trusted=True
)


def prepare(ctx: Ctx, res_id: str, body: dict[str, Any]) -> None:
    """Check a Subscription about to be stored and set the status the client may set."""
    spec = parse_subscription(body)
    if ctx.access.client_id == WORKER_CLIENT_ID:
        return  # the worker records a handshake or delivery outcome
    access = ctx.access
    if access.patient is not None:
        raise Forbidden("Subscriptions are for system clients, not patient-context tokens")
    existing = subscription_repository.get(ctx.conn, res_id)
    if existing is not None and not access.trusted and existing.owner.client_id != access.client_id:
        raise Forbidden(f"Subscription/{res_id} belongs to another client")
    if not (access.allows(spec.res_type, "s") or access.allows(spec.res_type, "r")):
        raise Forbidden(f"The token's scopes do not allow reading {spec.res_type}: nothing could be notified")
    check_endpoint_url(
        spec.endpoint,
        production=ctx.settings.env == "production",
        allow_private=ctx.settings.subscription_allow_private_endpoints,
    )
    status = body.get("status")
    unchanged = existing is not None and existing.status == "active" and _same_spec(existing, spec)
    if status == "off" or (status == "active" and unchanged):
        return
    body["status"] = "requested"
    body.pop("error", None)


def notifies_nothing(ctx: Ctx, res_type: str) -> bool:
    """Whether ``after_store`` of a ``res_type`` resource (not a Subscription) is known, without
    a statement, to queue nothing: no active subscription of that type as of the unit's stamp."""
    known = known_active(ctx.conn, ctx.subscriptions_stamp)
    return res_type != SUBSCRIPTION and known is not None and not known.get(res_type)


@dataclass(frozen=True, slots=True)
class Stored:
    """A new version just stored: what its notifications need (``person``: its compartment)."""

    res_type: str
    res_id: str
    body: dict[str, Any]
    version: int
    person: str | None


def after_store(ctx: Ctx, stored: Sequence[Stored]) -> None:
    """Mirror the Subscriptions among ``stored``; queue the notifications these new versions
    cause, in their order.

    ``stored`` were written together and no write among them but the first changes consent or
    the subscriptions (``fhir.storing.apply`` cuts its batches there), so one decision holds for
    all: each active subscription of a type is matched once against all of them, by id (one
    query per 1,000), never once per resource.
    """
    for change in stored:
        if change.res_type == SUBSCRIPTION:
            _mirror(ctx, change.res_id, change.body)
    by_type: dict[str, list[Stored]] = {}
    for change in stored:
        by_type.setdefault(change.res_type, []).append(change)
    # read at most once per unit while the subscriptions do not change (an import writes thousands)
    ctx.subscriptions_stamp, active = active_subscriptions(ctx.conn, ctx.subscriptions_stamp)
    now = utcnow().replace(tzinfo=None)
    for res_type, changes in by_type.items():
        for subscribed in active.get(res_type, ()):
            subscriber = owner_access(subscribed.owner)
            found = _matching(ctx, subscriber, subscribed, [c.res_id for c in changes])
            notified = [c for c in changes if c.res_id in found]
            subscription_repository.add_events(
                ctx.conn, subscribed.sub_id, [(c.res_type, c.res_id, c.version) for c in notified], now
            )
            audit = Ctx(ctx.conn, subscriber, ctx.settings, ctx.audit_events)
            decided: dict[str | None, str | None] = {}  # one consent decision per person notified
            for c in notified:
                if c.person not in decided:
                    decided[c.person] = audit.decided_by_now("notify", res_type, c.person)
                audit.audit(
                    "notify",
                    c.res_type,
                    c.res_id,
                    c.person,
                    query=subscribed.criteria,
                    decided_by=decided[c.person],
                )


def _mirror(ctx: Ctx, res_id: str, body: dict[str, Any]) -> None:
    spec = parse_subscription(body)
    subscription_repository.save(
        ctx.conn,
        res_id,
        res_type=spec.res_type,
        criteria=spec.criteria,
        endpoint=spec.endpoint,
        headers=spec.headers,
        payload=spec.payload,
        status=str(body.get("status")),
        owner=_owner(ctx.access),
    )
    _subscriptions_changed(ctx)


def after_delete(ctx: Ctx, res_type: str, res_id: str) -> None:
    """A deleted Subscription stops at once, its undelivered notifications with it."""
    if res_type == SUBSCRIPTION:
        subscription_repository.remove(ctx.conn, res_id)
        _subscriptions_changed(ctx)


def _subscriptions_changed(ctx: Ctx) -> None:
    """This transaction changed the subscriptions: its next writes read them again, as it sees them."""
    ctx.subscriptions_stamp = None


def owner_access(owner: SubscriptionOwner) -> AccessContext:
    """The AccessContext of a subscription's owner, as when it subscribed."""
    return AccessContext(
        client_id=owner.client_id,
        scopes=parse_scopes(owner.scope),
        organization=owner.organization,
        practitioner=owner.practitioner,
        trusted=owner.trusted,
        purpose=owner.purpose,
        raw_scope=owner.scope,
        verify_client=owner.verify,
    )


def _owner(access: AccessContext) -> SubscriptionOwner:
    return SubscriptionOwner(
        access.client_id,
        access.organization,
        access.practitioner,
        access.trusted,
        access.verify_client,
        access.raw_scope,
        access.purpose,
    )


MATCH_CHUNK = 1000  # ids per matching query (bound parameters stay few)


def _matching(
    ctx: Ctx, subscriber: AccessContext, subscribed: SubscriptionRow, res_ids: list[str]
) -> set[str]:
    """The ids among ``res_ids`` a search of the subscription's criteria by its owner finds now:
    the owner's scopes, the persons' consent, the very SQL of a REST search, restricted to
    these ids (``_id``) so that the cost follows them, not the rows already stored."""
    res_type = subscribed.res_type
    if not (subscriber.allows(res_type, "s") or subscriber.allows(res_type, "r")):
        return set()
    if subscriber.verify_client and not client_repository.is_active(ctx.conn, subscriber.client_id):
        return set()
    items = parse_qsl(subscribed.criteria, keep_blank_values=True)
    criteria = parse_search(res_type, items, default_count=1, max_count=1, strict=True)
    viewer = visibility.AccessViewer(subscriber, ctx.settings.consent_default_policy)
    found: set[str] = set()
    unique = list(dict.fromkeys(res_ids))
    for start in range(0, len(unique), MATCH_CHUNK):
        chunk = tuple(unique[start : start + MATCH_CHUNK])
        request = replace(criteria, ids=[*criteria.ids, chunk])
        found.update(res_id for _type, res_id in find_ids(ctx.conn, request, viewer, len(chunk)))
    return found


def _same_spec(existing: SubscriptionRow, spec: SubscriptionSpec) -> bool:
    return (existing.res_type, existing.criteria, existing.endpoint, existing.headers, existing.payload) == (
        spec.res_type,
        spec.criteria,
        spec.endpoint,
        spec.headers,
        spec.payload,
    )
