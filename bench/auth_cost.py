#!/usr/bin/env python3
"""Read throughput with token validation on and off (issue 3), same database, same run.

"Off" is not a setting of the gateway (there is none, on purpose): this script starts a
second server whose ``require_access`` dependency is overridden in the bench process only,
returning a trusted AccessContext without looking at any token.

    python bench/auth_cost.py [--engine postgresql|sqlite] [--patients 100] [--seconds 8]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run_bench import BIN, fhirload, free_port, new_database, wait_ready  # noqa: E402

APP_WITHOUT_AUTH = """
from fhir_gateway.app import create_app
from fhir_gateway.auth.context import AccessContext
from fhir_gateway.auth.dependency import require_access
from fhir_gateway.auth.scopes import parse_scopes

app = create_app()
CTX = AccessContext(client_id="bench", scopes=parse_scopes("system/*.cruds"), trusted=True)


async def _no_token() -> AccessContext:
    return CTX


app.dependency_overrides[require_access] = _no_token
"""


def serve(env: dict[str, str], port: int, workdir: Path, without_auth: bool) -> subprocess.Popen[bytes]:
    if without_auth:
        (workdir / "auth_off_app.py").write_text(APP_WITHOUT_AUTH)
        cmd = [str(BIN / "uvicorn"), "auth_off_app:app", "--port", str(port), "--no-access-log"]
        return subprocess.Popen(
            cmd, cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
    cmd = [str(BIN / "fhir-gateway"), "serve", "--port", str(port), "--no-migrate"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--engine", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--patients", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        url, _ = new_database(args.engine, workdir)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "FHIR_GATEWAY_DATABASE_URL": url,
            "FHIR_GATEWAY_BASE_URL": base,
            "FHIR_GATEWAY_DEMO_CLIENT": "false",
            "FHIR_GATEWAY_TOKEN_LIFETIME_SECONDS": "3600",
        }
        cli = str(BIN / "fhir-gateway")
        subprocess.run([cli, "migrate"], env=env, check=True, capture_output=True)
        subprocess.run(
            [
                cli,
                "clients",
                "add",
                "bench",
                "--scope",
                "system/*.cruds",
                "--secret",
                "bench-secret",
                "--trusted",
            ],
            env=env,
            check=True,
            capture_output=True,
        )
        state = workdir / "state.json"
        results: dict[str, object] = {}
        for label, without_auth in (("auth_on", False), ("auth_off", True)):
            process = serve(env, port, workdir, without_auth)
            try:
                wait_ready(f"{base}/health/live", process)
                import httpx

                token = httpx.post(
                    f"{base}/auth/token",
                    auth=("bench", "bench-secret"),
                    data={"grant_type": "client_credentials"},
                ).json()["access_token"]
                if not state.exists():
                    fhirload(
                        base + "/fhir",
                        token,
                        state,
                        "seed",
                        "--patients",
                        str(args.patients),
                        "--tasks",
                        "20",
                    )
                run = fhirload(
                    base + "/fhir",
                    token,
                    state,
                    "run",
                    "--seconds",
                    str(args.seconds),
                    "--only",
                    "read,search",
                )
                results[label] = run
            finally:
                process.terminate()
                process.wait(timeout=20)
    on, off = results["auth_on"], results["auth_off"]
    assert isinstance(on, dict)
    assert isinstance(off, dict)
    results["on_over_off"] = {k: round(on[k]["rps"] / off[k]["rps"], 3) for k in on if off[k]["rps"]}
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
