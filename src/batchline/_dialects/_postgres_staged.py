"""Bad rows on PostgreSQL in one pass: a chunk's rows COPied into a staging table typed like
the target, then inserted on the server a block at a time, each block (and, in a block that
failed, each row) under a subtransaction of its own; the rows whose error is the data's are
reported, the rest land. About four round trips, whatever the number of bad rows.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._base import ErrorKind, Executor, TableInfo
from ._postgres_errors import CLASSES, CODES

if TYPE_CHECKING:
    from ._postgres import PostgresDialect

__all__ = ["data_condition", "insert_staged", "unescaped"]


def unescaped(sql: str) -> str:
    """``sql`` built with :meth:`Dialect.quote` (which doubles ``%`` for psycopg's
    placeholders) as the server must read it where psycopg takes no parameters: COPY."""
    return sql.replace("%%", "%")


def data_condition() -> str:
    """A PL/pgSQL condition on ``SQLSTATE`` true exactly when :meth:`PostgresDialect.classify`
    would call that SQLSTATE the data's fault (built from the same two tables)."""
    classes = sorted(c for c, k in CLASSES.items() if k is ErrorKind.DATA)
    data_codes = sorted(c for c, k in CODES.items() if k is ErrorKind.DATA)
    other_codes = sorted(
        c for c, k in CODES.items() if k is not ErrorKind.DATA and c[:2] in classes
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


def insert_staged(
    dialect: PostgresDialect,
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
    target = [unescaped(t.sql), list(columns)]
    name = "batchline_stage_" + hashlib.sha1(json.dumps(target).encode()).hexdigest()[:12]
    ex.execute("SELECT set_config('batchline.stage', %s, true)", [json.dumps([*target, name])])
    ex.execute(_MAKE_STAGE)
    stage, cols = f"pg_temp.{dialect.quote(name)}", dialect.columns_sql(columns)
    ex.copy_rows(
        unescaped(f"COPY {stage} ({_ORD}, {cols}) FROM STDIN"),
        [(i, *row) for i, row in enumerate(rows)],
    )
    values = ", ".join(f"batchline.r.{dialect.quote(c)}" for c in columns)
    staged = ", ".join(f"s.{dialect.quote(c)}" for c in columns)
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
            data=data_condition(),
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
