"""Database refusals that are not bugs: the storage is read-only or full (issue 11).

Said plainly to clients (503 with the reason, ``errors_http``) and to operators (the CLI),
never hidden behind a 500 or a stack trace.
"""

from __future__ import annotations

from sqlalchemy.exc import DataError, DBAPIError

# PostgreSQL SQLSTATEs (Appendix A, "PostgreSQL Error Codes") and SQLite messages that mean
# the storage refuses writes, as opposed to a bug.
READ_ONLY = "The database is read-only: writes are refused until it is writable again (reads still work)"
FULL = "The database's storage is full: writes are refused until space is freed"
_SQLSTATES = {"25006": READ_ONLY, "53100": FULL, "53000": FULL}
_SQLITE_MESSAGES = {"readonly database": READ_ONLY, "database or disk is full": FULL}


def storage_refusal(exc: DBAPIError) -> str | None:
    """The plain reason when the database refuses writes (read-only, disk full), else None."""
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate in _SQLSTATES:
        return _SQLSTATES[sqlstate]
    message = str(exc.orig or "")
    return next((text for key, text in _SQLITE_MESSAGES.items() if key in message), None)


def refused_value(exc: DBAPIError) -> bool:
    """True when the database refused a value of the request (SQLSTATE class 22, "data
    exception": a NUL character, a number out of range...): the client's fault, not the
    server's. psycopg raises these as ``DataError``; asyncpg's adapter as a plain DB-API error."""
    return isinstance(exc, DataError) or str(getattr(exc.orig, "sqlstate", "") or "").startswith("22")


# SQLSTATE classes of a connection gone: "08" connection exception, "57P" the server shutting
# the session down (administrator, crash, start-up); not 57014, a cancelled statement.
_LOST_SQLSTATES = ("08", "57P")
_LOST_MESSAGES = ("not connected", "connection is closed", "connection was closed")


def connection_lost(error: BaseException | None) -> bool:
    """True when ``error`` (a driver's error, or SQLAlchemy's adaptation of it and its causes)
    says the connection to the server is gone: the unit cannot go on, the connection must not be
    used again. asyncpg raises some of these as plain interface errors (a session the server
    ended while the connection was idle), which SQLAlchemy does not count as disconnections."""
    for _ in range(4):
        if error is None:
            return False
        if isinstance(error, OSError):
            return True
        if str(getattr(error, "sqlstate", "") or "").startswith(_LOST_SQLSTATES):
            return True
        if any(text in str(error) for text in _LOST_MESSAGES):
            return True
        error = error.__cause__
    return False
