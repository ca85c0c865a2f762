#!/usr/bin/env python3
"""Partner import over HTTP (issue 5: ``POST /fhir/$import-partner``) on PostgreSQL.

1. a new database, migrated, and ``fhir-gateway serve`` on it (as ``run_bench.py`` starts it);
2. the service's Organization created and 1,000 beneficiaries imported (saad-beneficiaires),
   through the API with a trusted client's token;
3. a generated file of ``--rows`` visits (``mapping_import.write_files``) posted as
   saad-interventions; the rows per second of that request are printed.

    python bench/http_import.py [--rows 5000]

The CLI's import (``mapping_import.py``) writes through psycopg's synchronous connection and
``COPY``; this one through the server's request path (asyncpg, the write units of the REST
API). Figures, never pass/fail; the database is dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1].parent / "shared" / "bench"))

import mapping_import  # noqa: E402
import run_bench  # noqa: E402

ORGANIZATION = {"resourceType": "Organization", "id": "bench-saad", "name": "Bench SAAD"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="fgw_http_import_"))
    env, base, port = run_bench.prepared_gateway("postgresql", workdir)
    process = run_bench.serve(env, port)
    try:
        run_bench.wait_ready(f"{base}/health/live", process)
        headers = {"Authorization": f"Bearer {run_bench._token(base, 'bench')}"}
        with httpx.Client(base_url=base + "/fhir", headers=headers, timeout=3600) as client:
            created = client.put(
                "/Organization/bench-saad",
                json=ORGANIZATION,
                headers={"Content-Type": "application/fhir+json"},
            )
            created.raise_for_status()
            beneficiaries, visits = mapping_import.write_files(workdir, args.rows, 1000)
            imported = _post(client, "saad-beneficiaires", beneficiaries)
            imported.raise_for_status()
            started = time.perf_counter()
            answer = _post(client, "saad-interventions", visits)
            seconds = time.perf_counter() - started
            answer.raise_for_status()
    finally:
        process.terminate()
        process.wait(timeout=30)
    print(
        json.dumps(
            {"rows": args.rows, "seconds": round(seconds, 2), "rows_per_second": round(args.rows / seconds)}
        )
    )


def _post(client: httpx.Client, partner_format: str, path: Path) -> httpx.Response:
    params = {"format": partner_format, "organization": "Organization/bench-saad"}
    return client.post(
        "/$import-partner", params=params, content=path.read_bytes(), headers={"Content-Type": "text/csv"}
    )


if __name__ == "__main__":
    main()
