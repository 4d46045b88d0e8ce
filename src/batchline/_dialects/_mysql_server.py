"""What a MySQL/MariaDB server is and allows (read once per connection), and how many bytes
a value takes in a statement, as the driver escapes it."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pymysql.converters import escape_datetime

from ._base import utf8_size

__all__ = ["parse_server"]

_NON_TRANSACTIONAL = {
    "ARCHIVE",
    "ARIA",
    "BLACKHOLE",
    "CSV",
    "FEDERATED",
    "FEDERATEDX",
    "HEAP",
    "MEMORY",
    "MRG_MYISAM",
    "MYISAM",
}

_VERSION = re.compile(r"(\d+)\.(\d+)\.(\d+)")
#: The share of ``max_allowed_packet`` one statement may fill (estimates are conservative).
_PACKET_SHARE = 0.5
#: Statements above this size buy no speed; keep them moderate for the server's sake.
_MAX_STATEMENT = 8 * 1024 * 1024
#: Room in a statement of one row for its SQL text, besides the row's values.
_STATEMENT_ROOM = 64 * 1024
#: What PyMySQL and mysqlclient escape with a backslash inside a quoted literal.
_ESCAPED = ("\\", "'", '"', "\n", "\r", "\x00", "\x1a")
_ESCAPED_BYTES = tuple(c.encode() for c in _ESCAPED)


@dataclass(slots=True)
class _Server:
    """What one connection's server is and allows, read once when batchline takes it."""

    mariadb: bool
    version: tuple[int, int, int]
    max_packet: int
    autocommit: bool
    isolation: str | None

    @property
    def row_alias(self) -> bool:
        """``INSERT … AS new ON DUPLICATE KEY UPDATE c = new.c`` (MySQL 8.0.19+)."""
        return not self.mariadb and self.version >= (8, 0, 19)

    @property
    def returning(self) -> bool:
        """``INSERT … RETURNING`` (MariaDB 10.5+), which also works with ON DUPLICATE KEY."""
        return self.mariadb and self.version >= (10, 5, 0)

    @property
    def isolation_variable(self) -> str:
        # MySQL 8 removed tx_isolation; MariaDB before 11.1 only has tx_isolation.
        return "tx_isolation" if self.mariadb else "transaction_isolation"

    @property
    def statement_budget(self) -> int:
        return max(16 * 1024, min(int(self.max_packet * _PACKET_SHARE), _MAX_STATEMENT))


def parse_server(version: str, max_packet: int, autocommit: bool) -> _Server:
    """A ``_Server`` from ``SELECT VERSION()`` text such as ``10.11.6-MariaDB-0+deb12u1``."""
    m = _VERSION.search(version)
    numbers = (int(m[1]), int(m[2]), int(m[3])) if m else (0, 0, 0)
    return _Server("mariadb" in version.lower(), numbers, max_packet, autocommit, None)


def _literal_size(value: Any) -> int:
    """An upper bound of the bytes ``value`` takes in the statement, plus its separator.

    Also refuses container values early: PyMySQL would render a list as ``(1, 2)`` and turn
    a record's mistake into an SQL error that looks like batchline's.
    """
    t = type(value)
    if t is str:
        # ASCII doubles at worst (escaping); other characters take up to 4 bytes in UTF-8.
        return (2 if value.isascii() else 4) * len(value) + 4
    if value is None or t is int or t is float or t is bool:
        return 26
    if t is Decimal:
        return len(str(value)) + 4
    if isinstance(value, (bytes, bytearray, memoryview)):
        return 2 * len(bytes(value)) + 12
    if isinstance(value, (dt.date, dt.time, dt.timedelta)):
        return 34
    if isinstance(value, (list, tuple, set, frozenset, dict)):
        raise TypeError(f"a {t.__name__} cannot be stored in a MySQL column: {value!r:.80}")
    return 4 * len(str(value)) + 4


def _escape_datetime_utc(value: dt.datetime, mapping: Any = None) -> str:
    """PyMySQL's datetime literal, with a zone-aware value moved to UTC first.

    MySQL's DATETIME has no zone and PyMySQL writes the wall time, dropping the offset: a
    ``12:00+02:00`` would be stored as ``12:00``, another instant. Stored in UTC it stays the
    same instant (read back as naive UTC). Microseconds are sent; a ``DATETIME(6)`` keeps them.
    """
    if value.tzinfo is not None:
        offset = value.utcoffset()
        if offset is not None:
            value = (value - offset).replace(tzinfo=None)
    return str(escape_datetime(value, mapping))


def _exact_literal_size(value: Any) -> int:
    """The bytes ``value`` takes in the statement, as the driver escapes it (UTF-8)."""
    if type(value) is str:
        return utf8_size(value) + sum(map(value.count, _ESCAPED)) + 4
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        return len(data) + sum(map(data.count, _ESCAPED_BYTES)) + 12  # _binary'…'
    return _literal_size(value)
