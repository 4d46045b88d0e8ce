"""MySQL/MariaDB errors classified by error number (``exc.args[0]``): transient, data, fatal."""

from __future__ import annotations

import sqlalchemy as sa

from ._base import Classified, Dialect, ErrorKind

__all__ = ["classify"]

first_line = Dialect.first_line

# Error number → handling (MySQL and MariaDB share these numbers).
_TRANSIENT = {
    1040: "too many connections",
    1053: "server shutdown in progress",
    1203: "user has too many connections",
    1205: "lock wait timeout",
    1213: "deadlock",
    1317: "query interrupted",
    1637: "too many active concurrent transactions",
    1927: "connection killed",
    2002: "cannot connect (socket)",
    2003: "cannot connect",
    2006: "server has gone away",
    2013: "lost connection during query",
    2055: "lost connection",
    4031: "disconnected by the server (inactivity)",
}
_DATA = {
    1048: "column cannot be null",
    1062: "duplicate key",
    1136: "column count does not match",
    1153: "packet bigger than max_allowed_packet (a record too large)",
    1216: "foreign key (child row)",
    1217: "foreign key (parent row)",
    1263: "NULL for a NOT NULL column",
    1264: "out of range",
    1265: "data truncated",
    1292: "incorrect date/time or number",
    1300: "invalid character string",
    1364: "field has no default value",
    1366: "incorrect value",
    1367: "illegal value",
    1406: "data too long",
    1411: "incorrect value for function",
    1451: "foreign key (parent row)",
    1452: "foreign key (child row)",
    1557: "duplicate foreign key entry",
    1586: "duplicate key",
    1690: "value out of range",
    1761: "foreign key duplicate",
    1762: "foreign key duplicate",
    3140: "invalid JSON",
    3819: "check constraint (MySQL)",
    4025: "check constraint (MariaDB)",
}
_FATAL = {
    1044: "access denied to database",
    1045: "access denied",
    1054: "unknown column",
    1064: "syntax error",
    1142: "command denied",
    1146: "no such table",
}


def classify(exc: BaseException) -> Classified:
    """How to handle ``exc``: by MySQL/MariaDB error number where the driver gives one."""
    if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None:
        return classify(exc.orig)  # e.g. a reconnect that failed inside the pool
    name = type(exc).__name__
    msg = first_line(exc)
    driver = _is_driver_error(exc)
    number = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    if driver and number is not None:
        code = str(number)
        if len(exc.args) > 1:
            msg = f"({number}) {first_line(Exception(exc.args[1]))}"
        if number in _TRANSIENT:
            return Classified(ErrorKind.TRANSIENT, name, msg, code)
        if number in _DATA:
            return Classified(ErrorKind.DATA, name, msg, code)
        if number == 0 and name == "InterfaceError":  # PyMySQL: the connection is closed
            return Classified(ErrorKind.TRANSIENT, name, "connection closed", code)
        return Classified(ErrorKind.FATAL, name, msg, code)
    if driver and name in ("InterfaceError", "OperationalError"):
        return Classified(ErrorKind.TRANSIENT, name, msg, None)  # no number: the link
    if driver and name == "ProgrammingError" and "can not be used" in msg:
        return Classified(ErrorKind.DATA, name, msg, None)  # NaN, infinity: a record's value
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return Classified(ErrorKind.TRANSIENT, name, msg, None)
    if isinstance(exc, (TypeError, ValueError, OverflowError)):
        return Classified(ErrorKind.DATA, name, msg, None)
    return Classified(ErrorKind.FATAL, name, msg, None)


def _is_driver_error(exc: BaseException) -> bool:
    """A PyMySQL or mysqlclient error (both carry the server's error number in args[0])."""
    module = type(exc).__module__ or ""
    return module.startswith(("pymysql", "MySQLdb"))
