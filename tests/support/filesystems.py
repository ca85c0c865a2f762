"""Small filesystems for fault tests (issue 11): a tmpfs mounted for the test, and filling it.

Mounting needs root (CAP_SYS_ADMIN): where it is refused the calling test is skipped and says so.
"""

from __future__ import annotations

import errno
import os
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def tiny_filesystem(size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` that PostgreSQL's server may use too (outside pytest's private folders)."""
    path = Path(tempfile.mkdtemp(prefix="fgw-full-"))
    path.chmod(0o755)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0777", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        path.rmdir()
        pytest.skip(
            f"cannot mount a small filesystem here ({mounted.stderr.strip()}): disk full not simulated"
        )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)
        path.rmdir()


def fill(folder: Path) -> Path:
    """Take every free byte of ``folder``'s filesystem with one file; returns it."""
    filler = folder / "filler"
    handle = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (65536, 4096, 512, 1):  # down to the last crumbs
            written = 1
            while written:
                try:
                    written = os.write(handle, b"\0" * size)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    written = 0
    finally:
        os.close(handle)
    return filler
