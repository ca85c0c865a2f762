"""NDJSON files of export jobs (Bulk Data IG v2 export.html#bulk-data-output-file-request).

One line per resource, the stored JSON text as it is (compact JSON has no raw newline). Each
file holds one type; a type with more than ``max_resources`` resources continues in a next
file (``Task-1.ndjson``, ``Task-2.ndjson``...). Files live in
``<export_dir>/<job>/<attempt>/``: an attempt that a crashed worker left half-written never
mixes with the attempt that completes.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import IO, Any

from fhir_gateway.kit import jsonutil


class NdjsonFiles:
    """Writes the files of one attempt and lists them for the manifest."""

    def __init__(self, folder: Path, max_resources: int) -> None:
        self.folder = folder
        self.max_resources = max_resources
        self.outputs: list[dict[str, Any]] = []
        self._stream: IO[bytes] | None = None
        self._type: str | None = None
        self._numbers: dict[str, int] = {}
        folder.mkdir(parents=True, exist_ok=True)

    def write(self, res_type: str, contents: list[str]) -> None:
        """Append resources of ``res_type`` (in one file per type, split at ``max_resources``)."""
        for content in contents:
            if (
                self._stream is None
                or self._type != res_type
                or self.outputs[-1]["count"] >= self.max_resources
            ):
                self._open(res_type)
            assert self._stream is not None
            line = content if "\n" not in content else jsonutil.dumps_str(jsonutil.loads(content))
            self._stream.write(line.encode())
            self._stream.write(b"\n")
            self.outputs[-1]["count"] += 1

    def _open(self, res_type: str) -> None:
        self.close()
        number = self._numbers.get(res_type, 0) + 1
        self._numbers[res_type] = number
        name = f"{res_type}-{number}.ndjson"
        self._stream = open(self.folder / name, "wb", buffering=1 << 20)  # noqa: SIM115
        self._type = res_type
        self.outputs.append({"type": res_type, "file": name, "count": 0})

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None


def remove_job_files(export_dir: Path, job_id: str) -> None:
    """Delete every file of a job (cancelled or expired)."""
    if job_id and "/" not in job_id and ".." not in job_id:
        shutil.rmtree(export_dir / job_id, ignore_errors=True)


def remove_other_attempts(export_dir: Path, job_id: str, keep: str) -> None:
    """Delete the folders of a job's earlier, abandoned attempts."""
    folder = export_dir / job_id
    if folder.is_dir():
        for child in folder.iterdir():
            if child.name != keep:
                shutil.rmtree(child, ignore_errors=True)
