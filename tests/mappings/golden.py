"""Golden-file cases: ``tests/mappings/<format>/cases/<case>.csv`` + ``<case>.json``.

The JSON holds the set-up (formats imported before, as ``[format, file]`` where a file
``sample:NAME`` is a contract sample), the CLI options and the expected outcome: exit code,
problem lines, counts and the stored resources (ids replaced by stable labels). Run with
``UPDATE_GOLDEN=1`` to (re)write the expectations, then review the diff.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from fhir_gateway.storage.database import Database
from tests.mappings.conftest import SAMPLES, stored

HERE = Path(__file__).resolve().parent
TYPES = ("Patient", "Organization", "CareTeam", "CarePlan", "ServiceRequest", "Task")
_REF = re.compile(r"\b([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})\b")


def cases() -> list[Path]:
    return sorted(HERE.glob("*/cases/*.csv"))


def resolve(case_dir: Path, name: str) -> Path:
    return SAMPLES / name.removeprefix("sample:") if name.startswith("sample:") else case_dir / name


def _label(res: dict[str, Any]) -> str:
    idents = res.get("identifier") or []
    if idents:
        first = idents[0]
        return f"{res['resourceType']}/{first.get('value')}@{first.get('system', '').rsplit(':', 1)[-1]}"
    subject = (res.get("subject") or {}).get("reference", "")
    return f"{res['resourceType']}/{res.get('id') if not subject else 'of-' + subject}"


def snapshot(database: Database) -> dict[str, list[dict[str, Any]]]:
    """The stored resources of the mapping types, with ids and meta replaced by labels."""
    everything = {t: stored(database, t) for t in TYPES}
    labels: dict[str, str] = {}
    for _ in range(2):  # subjects first, then what is labelled by its subject
        for res_type, items in everything.items():
            for res in items:
                label = _label(res)
                labels[f"{res_type}/{res['id']}"] = _REF.sub(
                    lambda m: labels.get(m.group(0), m.group(0)), label
                )
    out: dict[str, list[dict[str, Any]]] = {}
    for res_type, items in everything.items():
        cleaned = []
        for res in items:
            text = json.dumps({k: v for k, v in res.items() if k not in ("id", "meta")}, ensure_ascii=False)
            text = _REF.sub(lambda m: labels.get(m.group(0), m.group(0)), text)
            cleaned.append(json.loads(text))
        if cleaned:
            out[res_type] = sorted(cleaned, key=lambda r: json.dumps(r, sort_keys=True, ensure_ascii=False))
    return out


def updating() -> bool:
    return os.environ.get("UPDATE_GOLDEN") == "1"
