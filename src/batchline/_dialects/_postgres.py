"""PostgreSQL through psycopg 3: COPY for inserts, ``unnest`` arrays for set-based writes.

Set-based statements take one array parameter per column (``unnest(%s::int[], …)``), so
the SQL text is the same for every chunk and psycopg prepares it once; arrays are cast to
the column's base type without length or precision, so a too-long or out-of-range value
still fails on assignment instead of being silently truncated by the cast.

Errors are classified by SQLSTATE class, as psycopg's own ``errors`` module groups them.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from ._base import Classified, Dialect, ErrorKind, Executor, RowLimit, TableInfo, utf8_size

__all__ = ["PostgresDialect"]

# SQLSTATE class → handling.
_CLASSES = {
    "08": ErrorKind.TRANSIENT,  # connection exception
    "40": ErrorKind.TRANSIENT,  # transaction rollback: serialization failure, deadlock
    "53": ErrorKind.TRANSIENT,  # insufficient resources: too many connections, disk full
    "57": ErrorKind.TRANSIENT,  # operator intervention: admin shutdown, crash shutdown
    "22": ErrorKind.DATA,  # data exception: bad number/date, value too long, out of range
    "23": ErrorKind.DATA,  # integrity constraint violation
    "42": ErrorKind.FATAL,  # syntax error or access rule violation: no such table/column
}
# Single SQLSTATEs that differ from their class.
_CODES = {
    # program_limit_exceeded: a value too large for an index row, an array, a tsvector or
    # a COPY line; its record's data (too many columns or arguments have codes of their own)
    "54000": ErrorKind.DATA,
    "55P03": ErrorKind.TRANSIENT,  # lock_not_available (lock timeout)
    "55006": ErrorKind.TRANSIENT,  # object_in_use
    "57014": ErrorKind.TRANSIENT,  # query_canceled (statement timeout)
}


def _data_condition() -> str:
    """A PL/pgSQL condition on ``SQLSTATE`` true exactly when :meth:`PostgresDialect.classify`
    would call that SQLSTATE the data's fault (built from the same two tables)."""
    classes = sorted(c for c, k in _CLASSES.items() if k is ErrorKind.DATA)
    data_codes = sorted(c for c, k in _CODES.items() if k is ErrorKind.DATA)
    other_codes = sorted(
        c for c, k in _CODES.items() if k is not ErrorKind.DATA and c[:2] in classes
    )
    parts = [f"left(SQLSTATE, 2) IN ({', '.join(repr(c) for c in classes)})"]
    if other_codes:
        parts[0] = f"({parts[0]} AND SQLSTATE NOT IN ({', '.join(repr(c) for c in other_codes)}))"
    if data_codes:
        parts.append(f"SQLSTATE IN ({', '.join(repr(c) for c in data_codes)})")
    return " OR ".join(parts)


#: The table ``insert_staged`` reports failures in, and the ordinal column the staged rows
#: are numbered in (a name no target column is expected to have).
_FAILED = "pg_temp.batchline_failed"
_ORD = '"batchline.ord"'

# Makes the staging table ready, empty: the ordinal and the insert's columns with the
# target's types, length and precision included (from the catalog: no privilege on the
# table needed, no constraint, no default), so a value the target's column cannot take
# fails the COPY into it with COPY's own error and line. The target, the columns and the
# staging table's name arrive through a setting (``batchline.stage``) set with a bound
# parameter just before. Temporary tables live as long as the connection, emptied at each
# commit, and are made again only when missing or when the column types they were made
# with (kept as the table's comment) changed: making and dropping them in every dirty
# chunk cost more than the rest of this. (``%%``: psycopg's escape for ``%``.)
_MAKE_STAGE = """DO $batchline$
DECLARE
    spec jsonb := current_setting('batchline.stage')::jsonb;
    stage text := 'pg_temp.' || quote_ident(spec ->> 2);
    cols text;
    missing text;
BEGIN
    SELECT c.name INTO missing
        FROM jsonb_array_elements_text(spec -> 1) AS c(name)
        WHERE NOT EXISTS (
            SELECT FROM pg_attribute AS a
            WHERE a.attrelid = (spec ->> 0)::regclass AND a.attname = c.name
            AND a.attnum > 0 AND NOT a.attisdropped)
        LIMIT 1;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'column "%%" of relation "%%" does not exist', missing, spec ->> 0
            USING ERRCODE = 'undefined_column';
    END IF;
    SELECT string_agg(
            format('%%I %%s', a.attname, format_type(a.atttypid, a.atttypmod)), ', '
            ORDER BY c.n)
        INTO cols
        FROM jsonb_array_elements_text(spec -> 1) WITH ORDINALITY AS c(name, n)
        JOIN pg_attribute AS a
            ON a.attrelid = (spec ->> 0)::regclass AND a.attname = c.name
            AND a.attnum > 0 AND NOT a.attisdropped;
    IF obj_description(to_regclass(stage), 'pg_class') IS NOT DISTINCT FROM cols THEN
        EXECUTE 'DELETE FROM ' || stage;
    ELSE
        IF to_regclass(stage) IS NOT NULL THEN
            EXECUTE 'DROP TABLE ' || stage;
        END IF;
        EXECUTE format(
            'CREATE TEMP TABLE %%I ("batchline.ord" integer PRIMARY KEY, %%s) '
            'ON COMMIT DELETE ROWS', spec ->> 2, cols);
        EXECUTE format('COMMENT ON TABLE %%s IS %%L', stage, cols);
    END IF;
    IF to_regclass('pg_temp.batchline_failed') IS NULL THEN
        CREATE TEMP TABLE batchline_failed (ord integer, code text, message text)
            ON COMMIT DELETE ROWS;
    ELSE
        DELETE FROM pg_temp.batchline_failed;
    END IF;
END
$batchline$"""

# Inserts the staged rows into the target in order, as they would land one at a time: a
# block of rows at a time, set-based, each block in a subtransaction of its own; a block
# that fails because of its data is undone and its rows go again one at a time, each in a
# subtransaction, a row whose error is the data's undone alone and recorded (ordinal,
# SQLSTATE, message). Any other error stops the statement as it is. (Blocks of 16 rows:
# measured with 0.6% bad rows, 1.3x a plain INSERT of the good rows on the server, where
# one row at a time is 2.2x; a block both larger or growing did worse.)
_INSERT_STAGED = """DO {tag}
<<batchline>>
DECLARE
    r record;
    low integer := 0;
    high integer;
    last integer;
BEGIN
    -- (the variables, named with the block's label, cannot be taken for columns)
    SELECT max(s.{ord}) INTO last FROM {stage} AS s;
    WHILE batchline.low <= batchline.last LOOP
        high := batchline.low + {block} - 1;
        BEGIN
            INSERT INTO {table} ({columns})
                SELECT {staged} FROM {stage} AS s
                WHERE s.{ord} BETWEEN batchline.low AND batchline.high ORDER BY s.{ord};
        EXCEPTION WHEN others THEN
            IF NOT ({data}) THEN
                RAISE;
            END IF;
            FOR r IN
                SELECT * FROM {stage} AS s
                WHERE s.{ord} BETWEEN batchline.low AND batchline.high ORDER BY s.{ord}
            LOOP
                BEGIN
                    INSERT INTO {table} ({columns}) VALUES ({values});
                EXCEPTION WHEN others THEN
                    IF {data} THEN
                        INSERT INTO {failed} VALUES (batchline.r.{ord}, SQLSTATE, SQLERRM);
                    ELSE
                        RAISE;
                    END IF;
                END;
            END LOOP;
        END;
        low := batchline.high + 1;
    END LOOP;
END
{tag}"""


def _unescaped(sql: str) -> str:
    """``sql`` built with :meth:`Dialect.quote` (which doubles ``%`` for psycopg's
    placeholders) as the server must read it where psycopg takes no parameters: COPY."""
    return sql.replace("%%", "%")


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
    if joined.count(",") != len(col) - 1 or _QUOTED.search(joined) or "null" in joined.lower():
        return None
    return "{" + joined + "}"


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    return str(value)


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
            kind = _CODES.get(code) or _CLASSES.get(code[:2], ErrorKind.FATAL)
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

    @staticmethod
    def _arrays(rows: Sequence[Sequence[Any]], types: Sequence[str]) -> list[Any]:
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
        ex.execute(sql, self._arrays(rows, types))

    def any_of(self, column_sql: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        return f"{column_sql} = ANY(%s)", [list(values)]

    # -- writes -----------------------------------------------------------------------------
    stages_rows = True

    def insert_staged(
        self,
        ex: Executor,
        t: TableInfo,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
    ) -> list[tuple[int, BaseException]]:
        """COPY ``rows`` into a temporary staging table typed like the target's columns,
        then insert them into the target one at a time, each under a subtransaction of its
        own, on the server (one statement): every failing row is found in one pass, not
        one COPY of the rest per bad row. About four round trips whatever the bad rows.

        What fails is what would fail one row at a time in order: a row meets the rows
        before it that landed. The failures come back as the errors the driver would have
        raised (same class, SQLSTATE and message), for ``classify``.
        """
        import psycopg

        # the setting takes the names as the server reads them: unescape psycopg's %%
        target = [_unescaped(t.sql), list(columns)]
        name = "batchline_stage_" + hashlib.sha1(json.dumps(target).encode()).hexdigest()[:12]
        ex.execute("SELECT set_config('batchline.stage', %s, true)", [json.dumps([*target, name])])
        ex.execute(_MAKE_STAGE)
        stage, cols = f"pg_temp.{self.quote(name)}", self.columns_sql(columns)
        ex.copy_rows(
            _unescaped(f"COPY {stage} ({_ORD}, {cols}) FROM STDIN"),
            [(i, *row) for i, row in enumerate(rows)],
        )
        values = ", ".join(f"batchline.r.{self.quote(c)}" for c in columns)
        staged = ", ".join(f"s.{self.quote(c)}" for c in columns)
        tag, n = "$batchline$", 0
        while tag in t.sql or tag in cols:  # a body quote no name ends
            n += 1
            tag = f"$batchline{n}$"
        ex.execute(
            _INSERT_STAGED.format(
                tag=tag,
                block=16,
                stage=stage,
                ord=_ORD,
                table=t.sql,
                columns=cols,
                values=values,
                staged=staged,
                data=_data_condition(),
                failed=_FAILED,
            )
        )
        failed = ex.query(f"SELECT ord, code, message FROM {_FAILED} ORDER BY ord")  # noqa: S608
        out: list[tuple[int, BaseException]] = []
        for at, code, message in failed:
            exc = psycopg.errors._class_for_state(code)(message)
            if getattr(exc, "sqlstate", None) != code:
                exc.sqlstate = code  # a class for its SQLSTATE's class, as psycopg does
            out.append((int(at), exc))
        return out

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
            ex.execute(sql, self._arrays(rows, types))
            return
        ex.copy_rows(_unescaped(f"COPY {t.sql} ({self.columns_sql(columns)}) FROM STDIN"), rows)

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
        ex.execute(sql, self._arrays(rows, self._types(t, columns)))

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
            ex.execute(sql, self._arrays(rows, self._types(t, columns)))
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
        ex.execute(sql, self._arrays(narrowed, self._types(t, cols)))

    def delete(
        self, ex: Executor, t: TableInfo, key: Sequence[str], keys: Sequence[Sequence[Any]]
    ) -> None:
        sql = (
            f"DELETE FROM {t.sql} WHERE ({self.columns_sql(key)}) IN "  # noqa: S608
            f"(SELECT * FROM {self._unnest(t, key)})"
        )
        ex.execute(sql, self._arrays(keys, self._types(t, key)))

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
        return ex.query(sql, self._arrays(keys, self._types(t, key)))

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
        return ex.query(sql, self._arrays(rows, self._types(t, columns)))
