#!/usr/bin/env python3
"""Cost of access token validation (issue 3): tokens verified per second, in process.

Measures the full validation the API does before a request reaches the database
(header parsing, ES256 signature, claims, key lookup) on one core, and the signing rate of
the token endpoint's JWTs. The revocation check is one indexed lookup inside the request's
own transaction and is part of the read benchmark, not of this figure.

    python bench/token_bench.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from fhir_gateway.auth.keys import SigningKeys
from fhir_gateway.auth.oauth_models import GatewayTokenGenerator, RegisteredClient
from fhir_gateway.auth.validation import TokenValidator
from fhir_gateway.settings import Settings
from fhir_gateway.storage.client_repository import ClientRecord
from fhir_gateway.storage.database import Database
from fhir_gateway.storage.migrate import upgrade


def rate(action: object, seconds: float) -> float:
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for _ in range(100):
            action()  # type: ignore[operator]
        count += 100
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'tokens.db'}"
        database = Database(url)
        upgrade(database)
        settings = Settings(database_url=url)
        keys = SigningKeys(database)
        validator = TokenValidator(settings, database, keys)
        client = ClientRecord(
            "bench", "system/*.cruds", None, None, None, "Organization/1", False, None, False, False
        )
        generator = GatewayTokenGenerator(settings, keys)
        registered = RegisteredClient(client)

        def issue(scope: str) -> str:
            return str(generator.generate("client_credentials", registered, scope=scope)["access_token"])

        token = issue("system/*.cruds")
        result = {
            "tokens_verified_per_s": round(rate(lambda: validator.validate(token), args.seconds)),
            "tokens_signed_per_s": round(rate(lambda: issue("system/*.rs"), args.seconds)),
            "algorithm": "ES256",
        }
        database.dispose()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
