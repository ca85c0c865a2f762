"""JSON log lines, one object per line, safe for shared log pipelines.

Every logger of the process (the gateway's, uvicorn's, the libraries') goes through one
JSON handler on the root logger. Only technical facts are logged (request id, client id,
method, route, status, duration); never names, identifiers such as the NIR, query strings or
bodies, which may hold personal data. Two rules keep them out of what others write:

- an exception is logged as its type and its stack (file, line, function), never its
  message: a database error's message holds the SQL parameters (a name, a NIR), a
  validation error's the value it refused;
- libraries that log data (SQLAlchemy's statements and parameters, httpx's URLs,
  python-multipart's form fields) are held at WARNING whatever the configured level.
"""

from __future__ import annotations

import logging
import sys
import traceback
from typing import Any, TextIO

import orjson

_STANDARD = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime", "color_message"}

# loggers that write personal data at INFO or DEBUG: never below WARNING
QUIET_LOGGERS = ("sqlalchemy", "httpx", "httpcore", "multipart", "python_multipart", "hpack", "urllib3")


class _NoProbeChatter(logging.Filter):
    """Alembic says which dialect it uses each time the readiness probe reads the revision."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(("Context impl", "Will assume"))


_PROBE_FILTER = _NoProbeChatter()


def safe_exception(exc: BaseException) -> dict[str, Any]:
    """An exception without its message: type, stack frames, and the types it was raised from."""
    frames = [f"{f.filename}:{f.lineno} in {f.name}" for f in traceback.extract_tb(exc.__traceback__)]
    causes: list[str] = []
    seen = {id(exc)}
    cause = exc.__cause__ or exc.__context__
    while cause is not None and id(cause) not in seen and len(causes) < 10:
        seen.add(id(cause))
        causes.append(type(cause).__qualname__)
        cause = cause.__cause__ or cause.__context__
    result: dict[str, Any] = {"type": type(exc).__qualname__, "stack": frames}
    if causes:
        result["caused_by"] = causes
    return result


class JsonFormatter(logging.Formatter):
    """``{"ts":..., "level":..., "logger":..., "msg":..., <extra fields>}``."""

    _second = -1
    _second_text = ""

    def _timestamp(self, record: logging.LogRecord) -> str:
        """``formatTime`` to the second, computed once per second (one line per request)."""
        second = int(record.created)
        if second != self._second:
            self._second_text = self.formatTime(record, "%Y-%m-%dT%H:%M:%S")
            self._second = second
        return self._second_text

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": self._timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        payload.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info and record.exc_info[1] is not None:
            payload["exception"] = safe_exception(record.exc_info[1])
        return orjson.dumps(payload, default=str).decode()


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to the current ``sys.stderr`` (which test runners and daemons may replace)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def configure_logging(level: str = "INFO") -> None:
    """Send every log of the process to stderr as JSON lines, at ``level``."""
    # logging's documented optimisations: no caller frame lookup, no thread or process names
    # (the JSON lines carry none of them)
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if not isinstance(h, _StderrHandler)]
    handler = _StderrHandler()
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    gateway = logging.getLogger("fhir_gateway")
    gateway.handlers.clear()
    gateway.setLevel(logging.NOTSET)
    gateway.propagate = True
    logging.getLogger("alembic.runtime.migration").addFilter(_PROBE_FILTER)  # once: same object
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
