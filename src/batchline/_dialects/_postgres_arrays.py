"""PostgreSQL's set-based statements take one array parameter per column
(``unnest(%s::int[], …)``): the columns of a chunk's rows as those arrays.

psycopg dumps a Python list value by value, in Python; a column of plain numbers or of text
that needs no quoting is sent instead as one array literal, joined in C.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

__all__ = ["array_params"]


def array_params(rows: Sequence[Sequence[Any]], types: Sequence[str]) -> list[Any]:
    """One array parameter per column, for ``unnest(%s::type[], ...)``.

    psycopg dumps a list only when its values share a type, so a column mixing them (1
    and 2.5, or 7 and "7") is first made one type: numbers, or text for the server's cast
    to the column type to judge, as it would a COPY field. A column of a known scalar
    type whose values need no quoting is then sent as one array literal, joined in C:
    psycopg would dump it value by value in Python.
    """
    if not rows:
        return [[] for _ in types]
    columns: list[Any] = [list(col) for col in zip(*rows, strict=True)]
    for i, col in enumerate(columns):
        kinds = set(map(type, col))
        if len(kinds) > 1:
            kinds.discard(type(None))
            if len(kinds) > 1:
                col = columns[i] = _uniform(col, kinds)
        if len(kinds) == 1 and types[i] and "[" not in types[i]:
            literal = _array_literal(col, kinds.pop())
            if literal is not None:
                columns[i] = literal
    return columns


_NUMBERS = frozenset({int, float, Decimal})


def _uniform(col: list[Any], kinds: set[type]) -> list[Any]:
    """``col`` with its values of several types made one type (see ``_arrays``)."""
    if kinds <= _NUMBERS:
        return [v if v is None or type(v) is Decimal else Decimal(repr(v)) for v in col]
    if any(k in (bytes, bytearray, memoryview, dict, list, tuple) for k in kinds):
        return col  # no faithful text form: let psycopg refuse it (a data error)
    return [None if v is None else _text(v) for v in col]


# Characters that make an array element need quotes (or that the literal cannot carry).
_QUOTED = re.compile(r'[{}"\\\s\x00]')
# ... those of them that are ASCII (\s among ASCII: space, \t\n\v\f\r and \x1c-\x1f).
_ASCII_QUOTED = tuple('{}"\\\x00 \t\n\x0b\x0c\r\x1c\x1d\x1e\x1f')


def _needs_quotes(joined: str) -> bool:
    """Whether ``joined`` holds a character of :data:`_QUOTED`: for ASCII text by a search
    for each one (in C, about a hundred times faster than the regex, which costs some 250
    instructions a character: every key of the idempotency ledger paid it)."""
    if joined.isascii():
        return any(c in joined for c in _ASCII_QUOTED)
    return _QUOTED.search(joined) is not None


def _array_literal(col: list[Any], kind: type) -> str | None:
    """``col`` (values all of type ``kind``) as a PostgreSQL array literal such as
    ``{1,2,3}``, or ``None`` where an element would need quoting: empty, NULL-like,
    or with braces, quotes, backslashes, commas or spaces."""
    if kind is int or kind is Decimal:
        if None in col:  # (NULL unquoted is a null element; "None" would not parse)
            return "{" + ",".join(["NULL" if v is None else str(v) for v in col]) + "}"
        return "{" + ",".join(map(str, col)) + "}"
    if kind is not str or not all(col):
        return None
    joined = ",".join(col)
    if joined.count(",") != len(col) - 1 or _needs_quotes(joined) or "null" in joined.lower():
        return None
    return "{" + joined + "}"


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    return str(value)
