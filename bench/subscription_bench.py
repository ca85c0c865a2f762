#!/usr/bin/env python3
"""Subscription delivery: throughput and change-to-delivery latency (issue 7).

1. a fresh PostgreSQL (default) or SQLite database; ``fhir-gateway serve`` without its
   embedded worker, and ``--delivery-workers`` separate ``fhir-gateway worker`` processes;
2. a local webhook receiver (loopback, so private endpoints are allowed for the run);
3. seed with ../shared/bench/fhirload.py, then its ``create`` scenario (wrk, 16 connections)
   once without and once with an active Subscription (``Task?status=requested``, full
   payload): what a subscription costs a write;
4. delivery throughput: notifications received per second until the outbox is empty;
5. latency when not saturated: Tasks created at ``--paced-rate`` per second, the time from
   the Task's ``meta.lastUpdated`` (commit) to its arrival at the receiver.

    python bench/subscription_bench.py [--engine postgresql|sqlite] [--seconds 10]
                                       [--delivery-workers 2] [--paced-rate 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from run_bench import BIN, ROOT, fhirload, free_port, new_database, wait_ready

FHIR_JSON = "application/fhir+json"


class Receiver:
    """The partner's webhook: arrival time and commit time of every notification."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[float, float | None]] = []  # (received, lastUpdated) epoch seconds
        arrivals, lock = self.arrivals, threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                received = time.time()
                if self.headers.get("X-FHIR-Event-Number"):
                    committed = None
                    if body:
                        stamp = json.loads(body)["meta"]["lastUpdated"].replace("Z", "+00:00")
                        committed = datetime.fromisoformat(stamp).timestamp()
                    with lock:
                        arrivals.append((received, committed))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_PUT = _answer  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/fhir"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000, 1)


def wait_until(condition: Any, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--delivery-workers", type=int, default=2)
    parser.add_argument("--paced-rate", type=float, default=20.0)
    parser.add_argument("--output", default=str(ROOT / "bench" / "results" / "subscriptions.json"))
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="fgw-subbench-"))
    url, _ = new_database(args.engine, workdir)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "FHIR_GATEWAY_DATABASE_URL": url,
        "FHIR_GATEWAY_BASE_URL": base,
        "FHIR_GATEWAY_DEMO_CLIENT": "false",
        "FHIR_GATEWAY_SUBSCRIPTION_WORKER_IN_SERVE": "false",
        "FHIR_GATEWAY_SUBSCRIPTION_ALLOW_PRIVATE_ENDPOINTS": "true",
        "FHIR_GATEWAY_SUBSCRIPTION_POLL_SECONDS": "0.05",
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
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    server = subprocess.Popen([cli, "serve", "--port", str(port), "--no-migrate"], env=env, **quiet)  # type: ignore[call-overload]
    workers = [subprocess.Popen([cli, "worker"], env=env, **quiet) for _ in range(args.delivery_workers)]  # type: ignore[call-overload]
    receiver = Receiver()
    try:
        wait_ready(f"{base}/health/live", server)
        token = httpx.post(
            f"{base}/auth/token", auth=("bench", "bench-secret"), data={"grant_type": "client_credentials"}
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}", "Content-Type": FHIR_JSON}
        fhir = base + "/fhir"
        state = workdir / "state.json"
        fhirload(fhir, token, state, "seed", "--patients", "100", "--tasks", "5")
        load = [
            "run",
            "--only",
            "create",
            "--seconds",
            str(args.seconds),
            "--concurrency",
            str(args.concurrency),
        ]
        without = fhirload(fhir, token, state, *load)["create"]
        subscription = {
            "resourceType": "Subscription",
            "status": "requested",
            "reason": "bench",
            "criteria": "Task?status=requested",
            "channel": {"type": "rest-hook", "endpoint": receiver.url, "payload": FHIR_JSON},
        }
        sub = httpx.post(f"{fhir}/Subscription", json=subscription, headers=headers).json()
        assert wait_until(
            lambda: (
                httpx.get(f"{fhir}/Subscription/{sub['id']}", headers=headers).json()["status"] == "active"
            ),
            30,
        ), "the subscription did not become active"
        with_sub = fhirload(fhir, token, state, *load)["create"]
        expected = int(with_sub["requests"]) - int(
            with_sub.get("errors", 0)
        )  # wrk's count; a few more in flight
        drained = wait_until(lambda: len(receiver.arrivals) >= expected, 600)
        quiet_since = [len(receiver.arrivals), time.monotonic()]

        def settled() -> bool:  # no arrival for 2 s: the outbox is empty
            if len(receiver.arrivals) != quiet_since[0]:
                quiet_since[:] = [len(receiver.arrivals), time.monotonic()]
            return time.monotonic() - quiet_since[1] > 2

        wait_until(settled, 120)
        burst = list(receiver.arrivals)
        span = burst[-1][0] - burst[0][0] if len(burst) > 1 else 0.0
        load_end = burst[0][0] + float(args.seconds)
        after_load = [r for r, _ in burst if r > load_end]
        drain_span = after_load[-1] - after_load[0] if len(after_load) > 1 else 0.0
        burst_latency = [r - c for r, c in burst if c is not None]
        # paced: below saturation, what a partner waits for a change
        receiver.arrivals.clear()
        patients = json.loads(state.read_text())["Patient"]
        paced = int(args.paced_rate * args.seconds)
        with httpx.Client(headers=headers) as client:
            for k in range(paced):
                task = {
                    "resourceType": "Task",
                    "status": "requested",
                    "intent": "order",
                    "for": {"reference": f"Patient/{patients[k % len(patients)]}"},
                }
                client.post(f"{fhir}/Task", json=task).raise_for_status()
                time.sleep(1 / args.paced_rate)
        wait_until(lambda: len(receiver.arrivals) >= paced, 60)
        paced_latency = [r - c for r, c in receiver.arrivals if c is not None]
        result = {
            "engine": args.engine,
            "delivery_workers": args.delivery_workers,
            "create_without_subscription": without,
            "create_with_subscription": with_sub,
            "write_cost_ratio": round(with_sub["rps"] / without["rps"], 3) if without.get("rps") else None,
            "burst": {
                "notifications": len(burst),
                "expected": expected,
                "drained": drained,
                "delivered_per_second": round(len(burst) / span, 1) if span else None,
                "delivered_per_second_after_load": round(len(after_load) / drain_span, 1)
                if drain_span
                else None,
                "latency_ms": {"p50": percentile(burst_latency, 50), "p99": percentile(burst_latency, 99)},
            },
            "paced": {
                "rate_per_second": args.paced_rate,
                "notifications": len(paced_latency),
                "latency_ms": {
                    "p50": percentile(paced_latency, 50),
                    "p95": percentile(paced_latency, 95),
                    "p99": percentile(paced_latency, 99),
                    "mean": round(statistics.mean(paced_latency) * 1000, 1) if paced_latency else None,
                },
            },
        }
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(result, indent=2))
        print(json.dumps(result, indent=2))
    finally:
        for process in [server, *workers]:
            process.terminate()
        for process in [server, *workers]:
            process.wait(timeout=20)
        receiver.server.shutdown()


if __name__ == "__main__":
    main()
