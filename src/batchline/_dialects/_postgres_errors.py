"""How PostgreSQL's SQLSTATEs are handled: by class, as psycopg's ``errors`` module groups
them, and a few single codes that differ from their class. Read by the dialect's
``classify`` and, as a PL/pgSQL condition, by the staged insert's server-side loop."""

from __future__ import annotations

from ._base import ErrorKind

__all__ = ["CLASSES", "CODES"]

# SQLSTATE class → handling.
CLASSES = {
    "08": ErrorKind.TRANSIENT,  # connection exception
    "40": ErrorKind.TRANSIENT,  # transaction rollback: serialization failure, deadlock
    "53": ErrorKind.TRANSIENT,  # insufficient resources: too many connections, disk full
    "57": ErrorKind.TRANSIENT,  # operator intervention: admin shutdown, crash shutdown
    "22": ErrorKind.DATA,  # data exception: bad number/date, value too long, out of range
    "23": ErrorKind.DATA,  # integrity constraint violation
    "42": ErrorKind.FATAL,  # syntax error or access rule violation: no such table/column
}
# Single SQLSTATEs that differ from their class.
CODES = {
    # program_limit_exceeded: a value too large for an index row, an array, a tsvector or
    # a COPY line; its record's data (too many columns or arguments have codes of their own)
    "54000": ErrorKind.DATA,
    "55P03": ErrorKind.TRANSIENT,  # lock_not_available (lock timeout)
    "55006": ErrorKind.TRANSIENT,  # object_in_use
    "57014": ErrorKind.TRANSIENT,  # query_canceled (statement timeout)
}
