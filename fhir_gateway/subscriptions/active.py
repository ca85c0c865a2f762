"""The active subscriptions a write must match, known once per change of the subscriptions.

FHIR R4 subscription.html: every write is matched against the active subscriptions of the
types it stores. Asking the database for them on every write cost a round trip, about a
third of a create's CPU in the gateway, for a set that changes a few times a day. The
process now keeps the last set it read, with the subscriptions' stamp of that read
(``storage.outbox_tables.subscription_stamp``, replaced in the transaction of every change to
the set). A write unit reads the current stamp in its first statement, with its client's
check (``storage.write_opening``); when it equals the kept one the kept set is the database's
and no query is needed. Otherwise, or when the stamp is unknown (a unit that did not read it,
a transaction that changed the subscriptions itself), the stamp and the set are read again in
one statement, and kept for the next writes (the unit keeps that stamp as its own).

A write therefore matches the subscriptions that were active when its first statement ran,
other processes' changes included; before, when its matching began. A stamp is random:
one read inside a transaction that is then rolled back is never met again.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Mapping, Sequence

from sqlalchemy import Connection, Engine

from fhir_gateway.storage import subscription_repository
from fhir_gateway.storage.subscription_repository import SubscriptionRow

ActiveByType = Mapping[str, Sequence[SubscriptionRow]]

# per database (its URL: a server on PostgreSQL has an engine per event loop), the last set read
_kept: dict[str, tuple[str, ActiveByType]] = {}
_lock = threading.Lock()
# each engine's URL as a key: hashing a URL renders it as text (about 10 µs per write)
_database_of: weakref.WeakKeyDictionary[Engine, str] = weakref.WeakKeyDictionary()


def _database(engine: Engine) -> str:
    key = _database_of.get(engine)
    if key is None:
        key = _database_of[engine] = engine.url.render_as_string(hide_password=False)
    return key


def known_active(conn: Connection, stamp: str | None) -> ActiveByType | None:
    """The active subscriptions as of ``stamp`` when this process already read them for it
    (no statement), else None."""
    if stamp is None:
        return None
    with _lock:
        kept = _kept.get(_database(conn.engine))
    return kept[1] if kept is not None and kept[0] == stamp else None


def active_subscriptions(conn: Connection, stamp: str | None) -> tuple[str | None, ActiveByType]:
    """The stamp and the active subscriptions per resource type: as of ``stamp`` (the unit's)
    when this process already read them for it; else as ``conn`` sees them now, with the
    stamp they were read with (which the unit then keeps)."""
    known = known_active(conn, stamp)
    if known is not None:
        return stamp, known
    current, by_type = subscription_repository.active_by_type(conn)
    if current is not None:
        with _lock:
            _kept[_database(conn.engine)] = (current, by_type)
    return current, by_type
