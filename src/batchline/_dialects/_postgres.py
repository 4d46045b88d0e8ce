"""PostgreSQL through psycopg 3: COPY for inserts, ``unnest`` arrays for set-based writes.

Set-based statements take one array parameter per column (``unnest(%s::int[], …)``), so
the SQL text is the same for every chunk and psycopg prepares it once; arrays are cast to
the column's base type without length or precision, so a too-long or out-of-range value
still fails on assignment instead of being silently truncated by the cast.

Errors are classified by SQLSTATE class, as psycopg's own ``errors`` module groups them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ._base import Classified, Dialect, ErrorKind, Executor, RowLimit, TableInfo, utf8_size
from ._ledger import claim_keys_postgres
from ._postgres_arrays import array_params
from ._postgres_errors import CLASSES, CODES
from ._postgres_staged import insert_staged, unescaped

__all__ = ["PostgresDialect"]


_COPY_LINE = re.compile(r"^COPY .*?, line (\d+)", re.MULTILINE)
#: A field, a COPY line and a statement's parameters each stop at 1 GiB (MaxAllocSize).
#: A row may take that less room for the rest of its chunk in an ``unnest`` array
#: (``chunk_bytes``, 16 MiB by default) and for the statement.
_ROW_LIMIT = RowLimit(
    (1 << 30) - (32 << 20), "PostgreSQL's 1 GiB for one value, COPY line or statement"
)


class PostgresDialect(Dialect):
    name = "postgresql"
    placeholder = "%s"
    pipelines = True
    explicit_begin = True  # BEGIN rides in the pipeline with the transaction's first statements
    locates_rows = True  # COPY names the line it failed on
    #: Inserts of this many rows or more use COPY; smaller ones an ``unnest`` INSERT, which
    #: rides in the pipeline. COPY costs about three round trips of its own but formats rows
    #: in C, where psycopg dumps array parameters in Python. Measured through a +0.5 ms each
    #: way proxy (bench/insert_paths.py): the INSERT ~20% faster at 500-row chunks, COPY ~8%
    #: faster at 5,000.
    copy_from_rows = 1_000

    def on_acquire(self, dbapi_conn: Any) -> None:
        # No automatic server-side prepared statements on batchline's connection: in
        # pipeline mode a statement prepared in a segment that fails is never created, yet
        # psycopg would go on using it ("prepared statement _pg3_N does not exist").
        dbapi_conn.info  # noqa: B018 - touch: fail fast if the connection is closed
        self._saved_threshold = dbapi_conn.prepare_threshold
        dbapi_conn.prepare_threshold = None

    def on_release(self, dbapi_conn: Any) -> None:
        dbapi_conn.prepare_threshold = getattr(self, "_saved_threshold", 5)

    def lock_place(self, ex: Executor) -> str:
        return str(ex.query("SELECT current_schema()")[0][0])

    def begin(self, ex: Executor) -> None:
        ex.execute("BEGIN")

    def relax_commit(self, ex: Executor) -> None:
        # the WAL is written in order: a later synchronous COMMIT flushes this one too
        ex.execute("SET LOCAL synchronous_commit TO OFF")

    def try_lock(self, ex: Executor, name: str) -> bool:
        # An advisory lock of the session: the server drops it when the connection ends.
        return bool(ex.query("SELECT pg_try_advisory_lock(%s)", [self._lock_id(name)])[0][0])

    def unlock(self, ex: Executor, name: str) -> None:
        # no result read: pipelined with the commit that follows it
        ex.execute("SELECT pg_advisory_unlock(%s)", [self._lock_id(name)])

    def _lock_id(self, name: str) -> int:
        return int.from_bytes(self.lock_digest(name)[:8], "big", signed=True)

    def row_limit(self, ex: Executor) -> RowLimit:
        return _ROW_LIMIT

    def value_bytes(self, value: Any) -> int:
        # as a COPY field: backslash, newline, carriage return and tab are escaped
        if type(value) is str:
            specials = sum(map(value.count, "\\\n\r\t"))
            return utf8_size(value) + specials + 1
        if isinstance(value, (bytes, bytearray, memoryview)):
            return 2 * memoryview(value).nbytes + 4  # \\x and two hex digits a byte
        return super().value_bytes(value) + 1

    def reported_row(self, exc: BaseException) -> int | None:
        # COPY reports its position in the error's context: 'COPY items, line 3: "..."'.
        context = getattr(getattr(exc, "diag", None), "context", None) or ""
        found = _COPY_LINE.search(context)
        return int(found.group(1)) - 1 if found else None

    def classify(self, exc: BaseException) -> Classified:
        import psycopg

        name = type(exc).__name__
        msg = self.first_line(exc)
        code: str | None = getattr(exc, "sqlstate", None)
        if isinstance(exc, psycopg.Error) and code:
            kind = CODES.get(code) or CLASSES.get(code[:2], ErrorKind.FATAL)
            if code == "57014" and "COPY from stdin failed" in str(exc):
                # A COPY aborted on our side: the cause is the value we could not send.
                cause = exc.__cause__ or exc.__context__
                if cause is not None and cause is not exc:
                    return self.classify(cause)
            return Classified(kind, name, msg, code)
        if isinstance(exc, psycopg.errors.PipelineAborted):
            # Only ever follows the real error, which was raised first; retrying cannot help.
            return Classified(ErrorKind.FATAL, name, msg, None)
        if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
            return Classified(ErrorKind.TRANSIENT, name, msg, None)
        if isinstance(exc, psycopg.DataError) or (
            isinstance(exc, psycopg.ProgrammingError)
            and ("cannot adapt" in msg or "cannot dump" in msg)
        ):
            return Classified(ErrorKind.DATA, name, msg, None)
        if isinstance(exc, (TypeError, ValueError, OverflowError)):
            return Classified(ErrorKind.DATA, name, msg, None)
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return Classified(ErrorKind.TRANSIENT, name, msg, None)
        return Classified(ErrorKind.FATAL, name, msg, code)

    # -- helpers ----------------------------------------------------------------------------
    def _unnest(self, t: TableInfo, columns: Sequence[str]) -> str:
        parts = []
        for col in columns:
            base = t.columns.get(col, "")
            parts.append(f"%s::{base}[]" if base else "%s")
        return "unnest(" + ", ".join(parts) + ")"

    @staticmethod
    def _types(t: TableInfo, columns: Sequence[str]) -> list[str]:
        return [t.columns.get(c, "") for c in columns]

    def insert_many(
        self,
        ex: Executor,
        table_sql: str,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        types: Sequence[str],
    ) -> None:
        marks = ", ".join(f"%s::{t}[]" for t in types)
        sql = (
            f"INSERT INTO {table_sql} ({self.columns_sql(columns)}) "  # noqa: S608
            f"SELECT * FROM unnest({marks})"
        )
        ex.execute(sql, array_params(rows, types))

    def any_of(self, column_sql: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        return f"{column_sql} = ANY(%s)", [list(values)]

    claim_keys = claim_keys_postgres  # an INSERT of all keys; a SELECT first after duplicates

    # -- writes -----------------------------------------------------------------------------
    stages_rows = True
    insert_staged = insert_staged

    def insert(
        self,
        ex: Executor,
        t: TableInfo,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        *,
        locate: bool = False,
    ) -> None:
        types = [t.columns.get(c, "") for c in columns]
        small = len(rows) < self.copy_from_rows
        if small and not locate and all(ty and "[" not in ty for ty in types):
            # In the pipeline: no round trip of its own (COPY cannot be pipelined and costs
            # about three). unnest() would flatten array columns, hence COPY for those.
            sql = (
                f"INSERT INTO {t.sql} ({self.columns_sql(columns)}) "  # noqa: S608
                f"SELECT * FROM {self._unnest(t, columns)}"
            )
            ex.execute(sql, array_params(rows, types))
            return
        ex.copy_rows(unescaped(f"COPY {t.sql} ({self.columns_sql(columns)}) FROM STDIN"), rows)

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
            sets = ", ".join(f"{self.quote(c)} = EXCLUDED.{self.quote(c)}" for c in update)
            action = f"DO UPDATE SET {sets}"
        else:
            action = "DO NOTHING"
        sql = (
            f"INSERT INTO {t.sql} ({self.columns_sql(columns)}) "  # noqa: S608
            f"SELECT * FROM {self._unnest(t, columns)} "
            f"ON CONFLICT ({self.columns_sql(key)}) {action}"
        )
        ex.execute(sql, array_params(rows, self._types(t, columns)))

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
                f"{self.quote(c)} = {t.sql}.{self.quote(c)} + EXCLUDED.{self.quote(c)}" for c in add
            )
            sql = (
                f"INSERT INTO {t.sql} ({self.columns_sql(columns)}) "  # noqa: S608
                f"SELECT * FROM {self._unnest(t, columns)} "
                f"ON CONFLICT ({self.columns_sql(key)}) DO UPDATE SET {sets}"
            )
            ex.execute(sql, array_params(rows, self._types(t, columns)))
            return
        cols = [*key, *add]
        idx = [list(columns).index(c) for c in cols]
        narrowed = [[row[i] for i in idx] for row in rows]
        sets = ", ".join(
            f"{self.quote(c)} = {t.sql}.{self.quote(c)} + v.{self.quote(c)}" for c in add
        )
        match = " AND ".join(f"{t.sql}.{self.quote(c)} = v.{self.quote(c)}" for c in key)
        sql = (
            f"UPDATE {t.sql} SET {sets} "  # noqa: S608
            f"FROM {self._unnest(t, cols)} AS v({self.columns_sql(cols)}) WHERE {match}"
        )
        ex.execute(sql, array_params(narrowed, self._types(t, cols)))

    def delete(
        self, ex: Executor, t: TableInfo, key: Sequence[str], keys: Sequence[Sequence[Any]]
    ) -> None:
        sql = (
            f"DELETE FROM {t.sql} WHERE ({self.columns_sql(key)}) IN "  # noqa: S608
            f"(SELECT * FROM {self._unnest(t, key)})"
        )
        ex.execute(sql, array_params(keys, self._types(t, key)))

    # -- lookups ----------------------------------------------------------------------------
    def lookup_select(
        self,
        ex: Executor,
        t: TableInfo,
        key: Sequence[str],
        returns: str,
        keys: Sequence[tuple[Any, ...]],
    ) -> list[tuple[Any, ...]]:
        if len(key) == 1:  # "= ANY(array)" is an index scan; "IN (SELECT unnest)" may not be
            base = t.columns.get(key[0], "")
            cast = f"::{base}[]" if base else ""
            sql = (
                f"SELECT {self.columns_sql([*key, returns])} FROM {t.sql} "  # noqa: S608
                f"WHERE {self.quote(key[0])} = ANY(%s{cast})"
            )
            return ex.query(sql, [[k[0] for k in keys]])
        sql = (
            f"SELECT {self.columns_sql([*key, returns])} FROM {t.sql} "  # noqa: S608
            f"WHERE ({self.columns_sql(key)}) IN (SELECT * FROM {self._unnest(t, key)})"
        )
        return ex.query(sql, array_params(keys, self._types(t, key)))

    def lookup_insert(
        self,
        ex: Executor,
        t: TableInfo,
        key: Sequence[str],
        columns: Sequence[str],
        returns: str,
        rows: Sequence[Sequence[Any]],
    ) -> list[tuple[Any, ...]] | None:
        sql = (
            f"INSERT INTO {t.sql} ({self.columns_sql(columns)}) "  # noqa: S608
            f"SELECT * FROM {self._unnest(t, columns)} "
            f"ON CONFLICT ({self.columns_sql(key)}) DO NOTHING "
            f"RETURNING {self.columns_sql([*key, returns])}"
        )
        return ex.query(sql, array_params(rows, self._types(t, columns)))
