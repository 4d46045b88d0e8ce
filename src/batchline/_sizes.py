"""Rows too large for the database: refused before they are sent, and dead letters that fit.

Each database caps what one statement or value can carry (``Dialect.row_limit``): MySQL's
``max_allowed_packet``, PostgreSQL's 1 GiB for a field or message, SQLite's
``SQLITE_LIMIT_LENGTH``. Sent anyway, a row over it costs more than its own record: MySQL
drops the connection, which reads as a network failure and is retried in vain; PostgreSQL
takes seconds to refuse it, or drops the connection too. So a record whose text is large
(the chunk counts it a column at a time, ``Chunk.measure``) has its rows measured,
and one over the limit becomes a dead letter at stage ``write`` without a statement.

Its dead letter must fit as well: a payload over the limit is stored cut, as a JSON object
that says so (:data:`TRUNCATED`), and replay leaves such letters alone.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from ._dialects import Dialect, RowLimit, utf8_size
from ._items import Failure, Op
from ._writes import Write

__all__ = ["TRUNCATED", "fit_payload", "measure_above", "oversized"]

#: The key of the object a cut payload is stored as: ``{"batchline_truncated": {...}}``.
TRUNCATED = "batchline_truncated"
#: The most characters of a cut payload kept (its head, for a person to recognise it).
_HEAD = 64 * 1024


def measure_above(limit: RowLimit | None) -> int:
    """The characters of text and bytes (``Chunk.measure``) above which a row is
    measured: a character takes at most 4 bytes as sent (an escaped ASCII one, 2)."""
    return sys.maxsize if limit is None else limit.size // 4


def oversized(
    ops: Sequence[Op], writes: Sequence[Write], dialect: Dialect, limit: RowLimit
) -> Failure | None:
    """Why a record whose rows are ``ops`` cannot be written (a row over ``limit``), or
    ``None``."""
    for index, _columns, values in ops:
        # its text alone, unescaped, settles most cases without a pass over each value
        size, least = sum(map(_text_size, values)), "at least "
        if size <= limit.size:
            size, least = sum(map(dialect.value_bytes, values)), ""
        if size > limit.size:
            return Failure(
                "write",
                "RowTooLarge",
                f"{writes[index].describe()}: a row of {least}{size:,} bytes, over {limit.what}",
            )
    return None


def _text_size(value: Any) -> int:
    """The bytes of ``value``'s text as UTF-8 (at most what it takes as sent)."""
    if type(value) is str:
        return utf8_size(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return memoryview(value).nbytes
    return 0


def fit_payload(payload: str, message: str, limit: RowLimit, dialect: Dialect) -> tuple[str, str]:
    """The ``payload`` and ``message`` of a dead letter as stored: a payload that would not
    fit in ``limit`` with the rest of its row is cut to its head, and the message says so."""
    room = limit.size - dialect.value_bytes(message) - 4096  # the other columns
    if 4 * len(payload) <= room:
        return payload, message
    size = utf8_size(payload)
    if size <= room and dialect.value_bytes(payload) <= room:
        return payload, message
    keep = max(0, min(_HEAD, room // 8))  # at most 4 bytes a character as sent, twice over
    cut = json.dumps({TRUNCATED: {"bytes": size, "head": payload[:keep]}}, ensure_ascii=False)
    note = (
        f" [dead letter cut: the record's JSON ({size:,} bytes) does not fit {limit.what}; "
        f"its first {keep:,} characters are kept]"
    )
    return cut, message + note
