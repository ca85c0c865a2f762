"""Large resources for storage-full tests: a few of them fill a small filesystem quickly."""

from __future__ import annotations

from typing import Any


def big_patient(pid: str, size: int = 20_000) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "name": [{"family": "F", "text": "x" * size}]}


def big_transaction(prefix: str) -> dict[str, Any]:
    """A transaction Bundle of five ``big_patient``s (PUT, ids ``prefix-0`` ... ``prefix-4``)."""
    entries = [
        {
            "resource": big_patient(f"{prefix}-{k}"),
            "request": {"method": "PUT", "url": f"Patient/{prefix}-{k}"},
        }
        for k in range(5)
    ]
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}
