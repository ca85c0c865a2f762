#!/usr/bin/env python3
"""Cost of profile validation (issue 6): resources validated per second, in process, one core.

For each profile's valid example (tests/validation/examples.py), measures what a write pays
before it reaches the database: ``check_body`` as the API runs it, first with the resource
claiming no profile (R4 structure only, fhir.resources), then claiming its profile
(structure + the compiled differential: cardinalities, fixed/pattern, bindings, references,
slices, FHIRPath invariants). Also the one-time load of profiles/ (parse, expand, compile).

    python bench/validation_bench.py [--seconds 2] [--json bench/results/validation.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fhir_gateway.fhir.writes import check_body  # noqa: E402
from fhir_gateway.validation.profiles import configure  # noqa: E402
from fhir_gateway.validation.registry import PROFILES_DIR, load_registry, registry  # noqa: E402
from tests.validation.examples import VALID  # noqa: E402


def rate(resource: dict[str, Any], seconds: float) -> float:
    res_type = resource["resourceType"]
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for _ in range(50):
            check_body(res_type, resource)
        count += 50
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=2.0, help="measuring time per case")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    configure("")
    started = time.perf_counter()
    load_registry(PROFILES_DIR)
    load_ms = (time.perf_counter() - started) * 1000
    registry()
    rows = []
    for name, example in sorted(VALID.items()):
        plain = copy.deepcopy(example)
        plain.pop("meta", None)
        structure = rate(plain, args.seconds)
        profiled = rate(copy.deepcopy(example), args.seconds)
        rows.append(
            {"profile": name, "structure_per_s": round(structure), "with_profile_per_s": round(profiled)}
        )
    total_plain = len(rows) / sum(1 / r["structure_per_s"] for r in rows)
    total_profiled = len(rows) / sum(1 / r["with_profile_per_s"] for r in rows)
    print(f"profiles/ loaded and compiled in {load_ms:.0f} ms")
    print(f"{'profile':34} {'structure only/s':>17} {'+ profile/s':>12} {'ratio':>6}")
    for r in rows:
        ratio = r["with_profile_per_s"] / r["structure_per_s"]
        print(f"{r['profile']:34} {r['structure_per_s']:>17,} {r['with_profile_per_s']:>12,} {ratio:>6.2f}")
    mix = total_profiled / total_plain
    print(f"{'mix (harmonic mean)':34} {total_plain:>17,.0f} {total_profiled:>12,.0f} {mix:>6.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        summary = {
            "load_ms": round(load_ms),
            "cases": rows,
            "mix_structure_per_s": round(total_plain),
            "mix_with_profile_per_s": round(total_profiled),
        }
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
