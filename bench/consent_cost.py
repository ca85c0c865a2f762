#!/usr/bin/env python3
"""What consent filtering costs a partner over HTTP (issue 4), on one server, same conditions.

Starts one gateway on a fresh database, seeds it with ../shared/bench/fhirload.py (500
patients x 20 tasks by default), adds 1,000 Consents (a permit for the partner and a deny for
another organisation per person), then runs the same scenarios with the trusted client's
token and the partner's, alternating ``--rounds`` times, so both meet the same machine. For
each run: requests per second and the server's CPU time per request. Figures only.

    python bench/consent_cost.py [--scenarios search,search_include,read] [--seconds 10] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run_bench import (  # noqa: E402
    _token,
    add_consents,
    analyze,
    fhirload,
    prepared_gateway,
    serve,
    server_cpu_seconds,
    wait_ready,
)


def _run(
    base: str, token: str, state: Path, scenario: str, args: argparse.Namespace, pid: int
) -> dict[str, float]:
    before = server_cpu_seconds(pid)
    figures = fhirload(base, token, state, "run", "--seconds", str(args.seconds), "--only", scenario)[
        scenario
    ]
    assert isinstance(figures, dict)
    spent = server_cpu_seconds(pid) - before
    return {
        "requests_per_s": figures["rps"],
        "errors": figures["errors"],
        "server_cpu_ms_per_request": round(1000 * spent / max(1, figures["requests"]), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--patients", type=int, default=500)
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--scenarios", default="search,search_include,read")
    args = parser.parse_args()
    os.environ.setdefault("FHIR_GATEWAY_TOKEN_LIFETIME_SECONDS", "3600")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        env, base_url, port = prepared_gateway("postgresql", workdir)
        server = serve(env, port)
        try:
            wait_ready(f"{base_url}/health/live", server)
            base = base_url + "/fhir"
            trusted, partner = _token(base_url, "bench"), _token(base_url, "bench-partner")
            state = workdir / "state.json"
            fhirload(
                base, trusted, state, "seed", "--patients", str(args.patients), "--tasks", str(args.tasks)
            )
            consents = add_consents(base, trusted, json.loads(state.read_text()))
            analyze("postgresql", base)
            runs: dict[str, list[dict[str, object]]] = {}
            for scenario in args.scenarios.split(","):
                for _ in range(args.rounds):
                    for who, token in (("trusted", trusted), ("partner", partner)):
                        figures = _run(base, token, state, scenario, args, server.pid)
                        runs.setdefault(scenario, []).append({"client": who, **figures})
        finally:
            server.terminate()
            server.wait(timeout=20)
    summary = {}
    for scenario, results in runs.items():
        mean = {
            who: {
                key: round(sum(float(r[key]) for r in results if r["client"] == who) / args.rounds, 3)  # type: ignore[arg-type]
                for key in ("requests_per_s", "server_cpu_ms_per_request")
            }
            for who in ("trusted", "partner")
        }
        summary[scenario] = {
            **mean,
            "partner_throughput_loss": round(
                1 - mean["partner"]["requests_per_s"] / mean["trusted"]["requests_per_s"], 3
            ),
            "partner_extra_cpu": round(
                mean["partner"]["server_cpu_ms_per_request"] / mean["trusted"]["server_cpu_ms_per_request"]
                - 1,
                3,
            ),
        }
    print(
        json.dumps({"settings": vars(args), "consents": consents, "runs": runs, "summary": summary}, indent=1)
    )


if __name__ == "__main__":
    main()
