"""SQLite: multi-row VALUES within its variable limit, ``ON CONFLICT`` upserts.

The stdlib driver's implicit transactions begin only before DML, so a lookup's SELECT
would run outside the chunk's transaction. batchline switches the connection to autocommit
mode while it holds it and issues ``BEGIN IMMEDIATE`` itself: the write lock is taken up
front, and "database is locked" surfaces at BEGIN, where it is cleanly retried.
"""

from __future__ import annotations

import json
import math
import sqlite3
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from ._base import Classified, Dialect, ErrorKind, Executor, RowLimit, TableInfo

__all__ = ["SQLiteDialect"]

_TRANSIENT = ("database is locked", "database table is locked", "busy", "disk i/o error")
_FATAL = (
    "no such table",
    "no such column",
    "has no column",
    "syntax error",
    "no such function",
    "readonly database",
    "attempt to write a readonly",
    "too many sql variables",
    "unable to open database",
    "not authorized",
    "on conflict clause does not match",
)


_NATIVE = (int, float, str, bytes, type(None))
_NATIVE_SET = frozenset(_NATIVE)


class _NaN:
    """Stands in a row for a float NaN, which SQLite would store as NULL without a word.

    Binding it raises (the adapter below), so the row fails as a data error, at bind time:
    row by row (``executemany``) that names the very row, and its record is dead-lettered
    with the reason while the others land."""

    __slots__ = ()


def _refuse_nan(value: _NaN) -> Any:
    raise ValueError("a float NaN: SQLite would store it as NULL, so it is refused, not changed")


sqlite3.register_adapter(_NaN, _refuse_nan)
_NAN = _NaN()


def _has_nan(column: Sequence[Any]) -> bool:
    """Whether a column holding floats has a NaN: summed in C first (NaN is truthy, and
    makes the sum NaN), value by value only when that cannot tell."""
    try:
        total = sum(filter(None, column), 0.0)
    except (TypeError, OverflowError):  # text, Decimals or huge ints beside the floats
        total = math.nan
    return total != total and any(type(v) is float and v != v for v in column)


def _cell(v: Any) -> Any:
    if type(v) in _NATIVE_SET:
        return _NAN if type(v) is float and v != v else v
    return _adapt_value(v)


def _adapted_rows(rows: Sequence[Sequence[Any]]) -> Sequence[Sequence[Any]]:
    """``rows`` with every value sqlite3 cannot bind converted (see :func:`_adapt_value`),
    and every float NaN replaced by one that fails its row (:class:`_NaN`).

    Checked a column at a time, by C loops (``zip``, ``map``, ``set``, ``sum``): most columns
    hold only types sqlite3 binds, and no NaN, and are left as they are; only a column with
    another type (a Decimal, a date) or a NaN is converted value by value."""
    if not rows:
        return rows
    columns = list(zip(*rows))
    changed = False
    for i, column in enumerate(columns):
        kinds = set(map(type, column))
        if not _NATIVE_SET.issuperset(kinds) or (float in kinds and _has_nan(column)):
            columns[i] = tuple([_cell(v) for v in column])
            changed = True
    return list(zip(*columns)) if changed else rows


def _never(row: int, exc: BaseException) -> bool:
    return False


class _Handed:
    """The (already adapted) rows from ``start`` on, as sqlite3 takes them one at a time,
    remembering the index of the last one taken."""

    __slots__ = ("last", "rows", "start")

    def __init__(self, rows: Sequence[Sequence[Any]], start: int) -> None:
        self.rows, self.start = rows, start
        self.last = start - 1

    def __iter__(self) -> Iterator[Sequence[Any]]:
        rows = self.rows  # adapted already
        for i in range(self.start, len(rows)):
            self.last = i
            yield rows[i]


def _adapt_value(v: Any) -> Any:
    """SQLite's stdlib driver binds only int/float/str/bytes/None; store the rest as
    SQLAlchemy does (Decimal as its exact text, which NUMERIC affinity turns into a
    number; dates as ISO text)."""
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, datetime):
        return v.isoformat(" ")
    if isinstance(v, (date, time)):
        return v.isoformat()
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, (dict, list)):
        return json.dumps(v)
    return v


class SQLiteDialect(Dialect):
    name = "sqlite"
    placeholder = "?"
    reads_ahead = False  # in-process: no round trip to hide, and a second connection locks
    locks_by_connection = False  # a file lock beside the database (batchline._job_lock)
    # A locating insert runs the row statement once per row (executemany, in C), counting
    # the rows it hands over: when one fails, the count names it. The rows before it stay
    # (each row is a statement of its own), so the insert can also leave it out and go on.
    # No round trips to pay here.
    locates_rows = True
    skips_rows = True

    def on_acquire(self, dbapi_conn: Any) -> None:
        dbapi_conn.isolation_level = None

    def on_release(self, dbapi_conn: Any) -> None:
        if dbapi_conn.in_transaction:
            dbapi_conn.execute("ROLLBACK")
        dbapi_conn.isolation_level = ""

    def adapt(self, params: list[Any]) -> list[Any]:
        for i, v in enumerate(params):
            if type(v) not in _NATIVE:
                params[i] = _adapt_value(v)
        return params

    def adapt_rows(self, rows: Sequence[Sequence[Any]]) -> Sequence[Sequence[Any]]:
        return _adapted_rows(rows)

    def begin(self, ex: Executor) -> None:
        ex.execute("BEGIN IMMEDIATE")

    def params_per_statement(self, ex: Executor) -> int:
        conn = ex.driver_connection
        try:
            limit = int(conn.getlimit(getattr(sqlite3, "SQLITE_LIMIT_VARIABLE_NUMBER", 9)))
        except AttributeError:  # Python < 3.11 has no getlimit
            limit = 999
        return max(1, min(limit, 32_766))

    def row_limit(self, ex: Executor) -> RowLimit:
        try:
            limit = int(ex.driver_connection.getlimit(getattr(sqlite3, "SQLITE_LIMIT_LENGTH", 0)))
        except AttributeError:  # Python < 3.11: the compiled-in default
            limit = 1_000_000_000
        # a row's record carries a header besides its values, and counts against it too
        return RowLimit(
            limit - 4096, f"SQLite's SQLITE_LIMIT_LENGTH ({limit:,} bytes) for one value or row"
        )

    def classify(self, exc: BaseException) -> Classified:
        msg = self.first_line(exc)
        low = msg.lower()
        name = type(exc).__name__
        code = getattr(exc, "sqlite_errorname", None)
        if isinstance(exc, sqlite3.IntegrityError):
            return Classified(ErrorKind.DATA, name, msg, code)
        if isinstance(exc, sqlite3.OperationalError):
            if any(s in low for s in _TRANSIENT):
                return Classified(ErrorKind.TRANSIENT, name, msg, code)
            if any(s in low for s in _FATAL):
                return Classified(ErrorKind.FATAL, name, msg, code)
            return Classified(ErrorKind.FATAL, name, msg, code)
        if isinstance(exc, (sqlite3.DataError, OverflowError)):
            return Classified(ErrorKind.DATA, name, msg, code)
        if isinstance(exc, sqlite3.ProgrammingError):
            if "type" in low and "not supported" in low:  # a value the driver cannot bind
                return Classified(ErrorKind.DATA, name, msg, code)
            if "closed" in low:
                return Classified(ErrorKind.TRANSIENT, name, msg, code)
            return Classified(ErrorKind.FATAL, name, msg, code)
        if isinstance(exc, (TypeError, ValueError)):
            return Classified(ErrorKind.DATA, name, msg, code)
        return Classified(ErrorKind.FATAL, name, msg, code)

    def insert(
        self,
        ex: Executor,
        t: TableInfo,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        *,
        locate: bool = False,
    ) -> None:
        if locate:
            self.insert_skipping(ex, t, columns, rows, _never)
        else:
            # Multi-row VALUES, not executemany: a statement per row costs SQLite a VDBE
            # halt and reset, and the driver a GIL release, each row (measured under
            # callgrind: ~3,000 more instructions a record).
            super().insert(ex, t, columns, rows)

    def insert_skipping(
        self,
        ex: Executor,
        t: TableInfo,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        skip: Callable[[int, BaseException], bool],
    ) -> None:
        marks = ", ".join(["?"] * len(columns))
        sql = f"INSERT INTO {t.sql} ({self.columns_sql(columns)}) VALUES ({marks})"  # noqa: S608
        rows = _adapted_rows(rows)
        start = 0
        while start < len(rows):
            handed = _Handed(rows, start)
            try:
                ex.execute_each(sql, handed, len(rows) - start)
                return
            except Exception as exc:
                # sqlite3 binds and runs each row before taking the next: the last one
                # taken is the one that failed
                failed = handed.last
                exc.batchline_failed_row = failed  # type: ignore[attr-defined]
                # a conflict clause of ROLLBACK would have ended the transaction: the rows
                # before are gone then, and there is nothing to go on with
                if not (ex.driver_connection.in_transaction and skip(failed, exc)):
                    raise
                start = failed + 1

    def _row_values(self, ncols: int, nrows: int) -> str:
        return "VALUES " + self._values(ncols, nrows)

    def upsert(
        self,
        ex: Executor,
        t: TableInfo,
        key: Sequence[str],
        columns: Sequence[str],
        update: Sequence[str],
        rows: Sequence[Sequence[Any]],
    ) -> None:
        if update:
            sets = ", ".join(f"{self.quote(c)} = excluded.{self.quote(c)}" for c in update)
            action = f"DO UPDATE SET {sets}"
        else:
            action = "DO NOTHING"
        head = f"INSERT INTO {t.sql} ({self.columns_sql(columns)}) VALUES "  # noqa: S608
        tail = f" ON CONFLICT ({self.columns_sql(key)}) {action}"
        self._each_values_batch(ex, columns, rows, lambda values: head + values + tail)

    def increment(
        self,
        ex: Executor,
        t: TableInfo,
        key: Sequence[str],
        columns: Sequence[str],
        add: Sequence[str],
        rows: Sequence[Sequence[Any]],
        create: bool,
    ) -> None:
        if create:
            sets = ", ".join(
                f"{self.quote(c)} = {t.sql}.{self.quote(c)} + excluded.{self.quote(c)}" for c in add
            )
            head = f"INSERT INTO {t.sql} ({self.columns_sql(columns)}) VALUES "  # noqa: S608
            tail = f" ON CONFLICT ({self.columns_sql(key)}) DO UPDATE SET {sets}"
            self._each_values_batch(ex, columns, rows, lambda values: head + values + tail)
            return
        cols = [*key, *add]
        idx = [list(columns).index(c) for c in cols]
        narrowed = [[row[i] for i in idx] for row in rows]
        names = ", ".join(f"c{i}" for i in range(len(cols)))
        sets = ", ".join(
            f"{self.quote(c)} = {t.sql}.{self.quote(c)} + v.c{len(key) + i}"
            for i, c in enumerate(add)
        )
        match = " AND ".join(f"{t.sql}.{self.quote(c)} = v.c{i}" for i, c in enumerate(key))

        def build(values: str) -> str:
            return (
                f"WITH v({names}) AS (VALUES {values}) "  # noqa: S608
                f"UPDATE {t.sql} SET {sets} FROM v WHERE {match}"
            )

        self._each_values_batch(ex, cols, narrowed, build)

    def lookup_insert(
        self,
        ex: Executor,
        t: TableInfo,
        key: Sequence[str],
        columns: Sequence[str],
        returns: str,
        rows: Sequence[Sequence[Any]],
    ) -> list[tuple[Any, ...]] | None:
        out: list[tuple[Any, ...]] = []
        head = f"INSERT INTO {t.sql} ({self.columns_sql(columns)}) VALUES "  # noqa: S608
        tail = (
            f" ON CONFLICT ({self.columns_sql(key)}) DO NOTHING "
            f"RETURNING {self.columns_sql([*key, returns])}"
        )
        per = self._rows_per_statement(ex, len(columns))
        for start in range(0, len(rows), per):
            batch = rows[start : start + per]
            params = self.adapt([v for row in batch for v in row])
            out.extend(ex.query(head + self._values(len(columns), len(batch)) + tail, params))
        return out
