"""What every dialect provides, and the portable multi-row ``VALUES`` statements.

A dialect turns one aggregated write (many rows) into as few set-based statements as the
database allows, and classifies the driver's exceptions into transient / data / fatal. The
flush code never looks at the dialect's name; it calls these methods.

Values always travel as bound parameters (or COPY data); identifiers are quoted by the
SQLAlchemy dialect's identifier preparer.
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import sqlalchemy as sa

from ._executor import Executor
from ._ledger import claim_keys_portable

__all__ = [
    "Classified",
    "Dialect",
    "ErrorKind",
    "Executor",
    "RowLimit",
    "RowTooLarge",
    "TableInfo",
    "utf8_size",
]


class ErrorKind(enum.Enum):
    """How a database error is handled (the failure contract in DESIGN.md)."""

    TRANSIENT = "transient"  # roll back, retry the same transaction
    DATA = "data"  # a record's fault: isolate it
    FATAL = "fatal"  # the setup's fault: stop at once


@dataclass(frozen=True, slots=True)
class Classified:
    kind: ErrorKind
    error_class: str  # e.g. "UniqueViolation", "IntegrityError"
    message: str  # first line of the driver message, without connection details
    code: str | None = None  # SQLSTATE or driver error number


@dataclass(frozen=True, slots=True)
class RowLimit:
    """The most bytes one row's values may take as the database receives them."""

    size: int
    what: str  # what sets it, for the dead letter: "MariaDB's max_allowed_packet (…)"


class RowTooLarge(ValueError):
    """A row over its :class:`RowLimit`, refused before it was sent: its record's fault."""


def utf8_size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


_TYPE_MODIFIERS = re.compile(r"\(\s*\d+(?:\s*,\s*\d+)?\s*\)")


@dataclass(slots=True)
class TableInfo:
    """A target table as reflected once at pipeline start."""

    name: str  # as the user wrote it
    sql: str  # quoted, schema-qualified
    columns: dict[str, str] = field(default_factory=dict)  # column -> base SQL type, no modifiers

    @staticmethod
    def base_type(type_: Any, dialect: sa.engine.Dialect) -> str:
        """The column's type without length/precision, safe to cast parameters to."""
        try:
            compiled = str(type_.compile(dialect=dialect))
        except Exception:  # NullType and unknown user types: let the server infer
            return ""
        return _TYPE_MODIFIERS.sub("", compiled).strip()


def chunked(rows: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


class Dialect:
    """Portable SQL built from multi-row ``VALUES``; subclasses add the fast paths."""

    name = "generic"
    placeholder = "%s"
    #: Bound parameters allowed in one statement (SQLite's limit is read per connection).
    max_params = 30_000
    #: Whether the driver can send statements without waiting for each result.
    pipelines = False
    #: Whether sessions run the driver in autocommit and open each transaction with an
    #: explicit BEGIN (:meth:`begin`): then nothing waits for a BEGIN of the driver's own
    #: (psycopg waits a round trip for its implicit one in pipeline mode), and a statement
    #: outside a transaction (the job lock's) needs no COMMIT after it.
    explicit_begin = False
    #: Whether a failed ``insert(..., locate=True)`` says which row failed (failed_row).
    locates_rows = False
    #: Whether :meth:`insert_skipping` exists: an insert that can leave out a failing row
    #: and go on, keeping the rows before it.
    skips_rows = False
    #: Whether :meth:`insert_staged` exists: an insert that tries every row on its own on
    #: the server and reports all the rows that failed, in one pass.
    stages_rows = False
    #: Whether to select a chunk's lookup keys ahead, on a second connection, while the
    #: previous chunk flushes (worth a round trip only over a network).
    reads_ahead = True

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.sa_dialect = engine.dialect
        self._preparer = engine.dialect.identifier_preparer

    # -- identifiers ------------------------------------------------------------------------
    def quote(self, ident: str) -> str:
        # In format paramstyle a literal % must be doubled, even inside quotes: SQLAlchemy's
        # preparer does it already for such drivers (doubling again made "a%b" a%%b).
        return str(self._preparer.quote(ident))

    def table_sql(self, name: str) -> str:
        return ".".join(self.quote(part) for part in name.split("."))

    def columns_sql(self, columns: Sequence[str]) -> str:
        return ", ".join(self.quote(c) for c in columns)

    def reflect(self, conn: sa.Connection, name: str) -> TableInfo:
        """Reflect ``name``; raises ``sqlalchemy.exc.NoSuchTableError`` when it is missing."""
        schema, _, table = name.rpartition(".")
        cols = sa.inspect(conn).get_columns(table, schema=schema or None)
        if not cols:
            raise sa.exc.NoSuchTableError(name)
        types = {c["name"]: TableInfo.base_type(c["type"], self.sa_dialect) for c in cols}
        return TableInfo(name=name, sql=self.table_sql(name), columns=types)

    # -- connections --------------------------------------------------------------------------
    def on_acquire(self, dbapi_conn: Any) -> None:
        """Prepare a pooled connection for batchline's explicit transactions."""

    def on_release(self, dbapi_conn: Any) -> None:
        """Undo :meth:`on_acquire` before the connection goes back to the pool."""

    def begin(self, ex: Executor) -> None:
        """Start a transaction (drivers that begin implicitly need nothing)."""

    def params_per_statement(self, ex: Executor) -> int:
        return self.max_params

    def relax_commit(self, ex: Executor) -> None:
        """Let the open transaction's COMMIT return before it is durable, where the database
        allows it per transaction. For transactions that hold only a run's bookkeeping (the
        job's start and end): losing one in a crash loses nothing, since the next durable
        commit (a chunk's) makes every earlier one durable with it, in order."""

    # -- holding a job (see batchline._job_lock) ---------------------------------------------
    #: Whether a run holds its job with a session lock of the connection that commits its
    #: chunks (the server drops it with the connection); SQLite holds a file lock instead.
    locks_by_connection = True

    def lock_place(self, ex: Executor) -> str:
        """Where unqualified state tables live (schema or database): part of a lock's name,
        so one job name in two places is two jobs."""
        return ""

    def try_lock(self, ex: Executor, name: str) -> bool:
        """Take the session lock ``name`` without waiting; whether it was free."""
        raise NotImplementedError

    def unlock(self, ex: Executor, name: str) -> None:
        """Release a session lock :meth:`try_lock` took on this connection."""
        raise NotImplementedError

    @staticmethod
    def lock_digest(name: str) -> bytes:
        return hashlib.sha256(name.encode()).digest()

    def adapt(self, params: list[Any]) -> list[Any]:
        """Convert values the driver cannot bind itself (identity where it can)."""
        return params

    def adapt_rows(self, rows: Sequence[Sequence[Any]]) -> Sequence[Sequence[Any]]:
        """:meth:`adapt` for rows (identity where the driver binds every value itself)."""
        return rows

    # -- sizes ------------------------------------------------------------------------------
    def row_limit(self, ex: Executor) -> RowLimit | None:
        """The most bytes (by :meth:`value_bytes`) one row's values may take; ``None``
        where only memory limits them."""
        return None

    def value_bytes(self, value: Any) -> int:
        """The bytes ``value`` takes as sent, or more (never less). Only asked of records
        whose text is large, so it may take a pass over the value."""
        t = type(value)
        if t is str:
            return utf8_size(value)
        if isinstance(value, (bytes, bytearray, memoryview)):
            return memoryview(value).nbytes
        if value is None or t is int or t is float or t is bool:
            return 24
        return utf8_size(str(value))

    # -- error classification -------------------------------------------------------------
    def classify(self, exc: BaseException) -> Classified:
        raise NotImplementedError

    def failed_row(self, exc: BaseException) -> int | None:
        """The 0-based index of the row an ``insert(..., locate=True)`` failed on, if known;
        ``None`` otherwise. Where batchline counted the rows itself (row by row, or rows
        sent again without some), the index it recorded on ``exc`` wins."""
        row = getattr(exc, "batchline_failed_row", None)
        if isinstance(row, int):
            return row if row >= 0 else None
        return self.reported_row(exc)

    def reported_row(self, exc: BaseException) -> int | None:
        """The failing row as the database's error reports it (PostgreSQL's COPY line)."""
        return None

    @staticmethod
    def first_line(exc: BaseException) -> str:
        text = str(exc).strip() or type(exc).__name__
        return text.splitlines()[0][:500]

    # -- helpers ----------------------------------------------------------------------------
    def _values(self, ncols: int, nrows: int) -> str:
        one = "(" + ", ".join([self.placeholder] * ncols) + ")"
        return ", ".join([one] * nrows)

    def _rows_per_statement(self, ex: Executor, ncols: int) -> int:
        return max(1, self.params_per_statement(ex) // max(1, ncols))

    def _each_values_batch(
        self,
        ex: Executor,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        build: Callable[[str], str],
    ) -> None:
        """Run ``build(values_sql)`` once per batch of rows that fits the parameter limit."""
        per = self._rows_per_statement(ex, len(columns))
        for batch in chunked(rows, per):
            params = list(chain.from_iterable(self.adapt_rows(batch)))
            ex.execute(build(self._values(len(columns), len(batch))), params)

    # -- plain multi-row statements for the state tables ---------------------------------------
    def insert_many(
        self,
        ex: Executor,
        table_sql: str,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        types: Sequence[str],
    ) -> None:
        """Insert ``rows`` with as few statements as the parameter limit allows.

        ``types`` are the columns' SQL types, for databases that bind arrays (PostgreSQL).
        """
        head = f"INSERT INTO {table_sql} ({self.columns_sql(columns)}) VALUES "  # noqa: S608
        self._each_values_batch(ex, columns, rows, lambda values: head + values)

    #: The ledger's claim of a try's keys (see ``_ledger``): the portable SELECT, then INSERT.
    claim_keys = claim_keys_portable

    def any_of(self, column_sql: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """A ``column IN (…)`` condition and its parameters (one batch: keep it short)."""
        marks = ", ".join([self.placeholder] * len(values))
        return f"{column_sql} IN ({marks})", self.adapt(list(values))

    # -- writes (portable forms) ---------------------------------------------------------------
    def insert(
        self,
        ex: Executor,
        t: TableInfo,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        *,
        locate: bool = False,
    ) -> None:
        """Insert ``rows``; with ``locate``, in a form whose failure names the row, where the
        database can (see :meth:`failed_row`)."""
        head = f"INSERT INTO {t.sql} ({self.columns_sql(columns)}) VALUES "  # noqa: S608
        self._each_values_batch(ex, columns, rows, lambda values: head + values)

    def insert_skipping(
        self,
        ex: Executor,
        t: TableInfo,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        skip: Callable[[int, BaseException], bool],
    ) -> None:
        """Insert ``rows`` in order; when row ``i`` fails with ``exc``, ``skip(i, exc)``
        decides: true leaves the row out and goes on with the next (the rows before it
        stay), false raises ``exc`` (whose :meth:`failed_row` is ``i``). Only where
        :attr:`skips_rows`."""
        raise NotImplementedError

    def insert_staged(
        self,
        ex: Executor,
        t: TableInfo,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
    ) -> list[tuple[int, BaseException]]:
        """Insert ``rows`` one at a time, in order, on the server, each row that fails left
        out (the rows before it stay); return ``(index, error)`` of each data failure, in
        order. A value the column cannot take raises, as :meth:`insert` with ``locate``
        does (:meth:`failed_row` names it; nothing is inserted); an error that is not the
        data's (classified transient or fatal) raises. Only where :attr:`stages_rows`."""
        raise NotImplementedError

    def upsert(
        self,
        ex: Executor,
        t: TableInfo,
        key: Sequence[str],
        columns: Sequence[str],
        update: Sequence[str],
        rows: Sequence[Sequence[Any]],
    ) -> None:
        raise NotImplementedError

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
        raise NotImplementedError

    def merges(self, t: TableInfo, key: Sequence[str]) -> bool:
        """Whether :meth:`upsert` and :meth:`increment` on ``key`` of ``t`` may be done as
        one set-based merge of staged rows (``_dialects._merge``)."""
        return True

    def delete(
        self, ex: Executor, t: TableInfo, key: Sequence[str], keys: Sequence[Sequence[Any]]
    ) -> None:
        per = self._rows_per_statement(ex, len(key))
        for batch in chunked(keys, per):
            if len(key) == 1:
                marks = ", ".join([self.placeholder] * len(batch))
                where = f"{self.quote(key[0])} IN ({marks})"
            else:
                where = f"({self.columns_sql(key)}) IN ({self._row_values(len(key), len(batch))})"
            sql = f"DELETE FROM {t.sql} WHERE {where}"  # noqa: S608
            ex.execute(sql, self.adapt([v for k in batch for v in k]))

    def _row_values(self, ncols: int, nrows: int) -> str:
        """A list of row constructors usable after ``IN``; SQLite overrides with VALUES."""
        return self._values(ncols, nrows)

    # -- lookups ------------------------------------------------------------------------------
    def lookup_select(
        self,
        ex: Executor,
        t: TableInfo,
        key: Sequence[str],
        returns: str,
        keys: Sequence[tuple[Any, ...]],
    ) -> list[tuple[Any, ...]]:
        """Rows of (key..., returns) for those of ``keys`` that exist."""
        out: list[tuple[Any, ...]] = []
        per = self._rows_per_statement(ex, len(key))
        cols = self.columns_sql([*key, returns])
        for batch in chunked(keys, per):
            if len(key) == 1:
                marks = ", ".join([self.placeholder] * len(batch))
                where = f"{self.quote(key[0])} IN ({marks})"
            else:
                where = f"({self.columns_sql(key)}) IN ({self._row_values(len(key), len(batch))})"
            sql = f"SELECT {cols} FROM {t.sql} WHERE {where}"  # noqa: S608
            out.extend(ex.query(sql, self.adapt([v for k in batch for v in k])))
        return out

    def lookup_insert(
        self,
        ex: Executor,
        t: TableInfo,
        key: Sequence[str],
        columns: Sequence[str],
        returns: str,
        rows: Sequence[Sequence[Any]],
    ) -> list[tuple[Any, ...]] | None:
        """Insert missing lookup rows, ignoring key conflicts.

        Returns the (key..., returns) of the inserted rows when the database can say so in
        the same statement, or ``None`` to make the caller select them.
        """
        raise NotImplementedError
