"""The server's token signing keys (RFC 7517): persisted, rotatable, published at /auth/jwks.

Tokens are signed with the newest key (ES256). Retired keys keep verifying until the tokens
they signed have expired; ``rotate`` adds a new key and retires the others.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

from joserfc.jwk import ECKey, KeySet

from fhir_gateway.kit.timeutil import utcnow
from fhir_gateway.storage import client_repository
from fhir_gateway.storage.database import Database

ALGORITHM = "ES256"


class SigningKeys:
    """Loads keys from the database once, reloads on an unknown ``kid`` or after rotation."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._lock = threading.Lock()
        self._keys: list[ECKey] = []

    def _load(self) -> None:
        with self.database.transaction(write=True) as conn:
            rows = client_repository.signing_keys(conn)
            if not rows:
                kid = uuid.uuid4().hex[:16]
                key = ECKey.generate_key("P-256", parameters={"kid": kid, "alg": ALGORITHM, "use": "sig"})
                pem = key.as_pem(private=True).decode()
                client_repository.add_signing_key(conn, kid, pem, utcnow().replace(tzinfo=None))
                rows = [(kid, pem, None)]
        self._keys = [
            ECKey.import_key(pem, parameters={"kid": kid, "alg": ALGORITHM, "use": "sig"})
            for kid, pem, _ in rows
        ]

    def current(self) -> ECKey:
        with self._lock:
            if not self._keys:
                self._load()
            return self._keys[0]

    def key_set(self, kid: str | None = None) -> KeySet:
        """The verification keys; reloaded once when ``kid`` is not among them."""
        with self._lock:
            if not self._keys or (kid is not None and all(k.kid != kid for k in self._keys)):
                self._load()
            return KeySet(list(self._keys))

    def public_jwks(self) -> dict[str, Any]:
        self.current()
        return {"keys": [k.as_dict(private=False) for k in self._keys]}

    def rotate(self) -> str:
        """Add a new signing key and retire the others; the new ``kid``."""
        kid = uuid.uuid4().hex[:16]
        key = ECKey.generate_key("P-256", parameters={"kid": kid, "alg": ALGORITHM, "use": "sig"})
        moment = utcnow().replace(tzinfo=None)
        with self.database.transaction(write=True) as conn:
            client_repository.add_signing_key(conn, kid, key.as_pem(private=True).decode(), moment)
            client_repository.retire_signing_keys(conn, kid, moment)
        with self._lock:
            self._keys = []
        return kid
