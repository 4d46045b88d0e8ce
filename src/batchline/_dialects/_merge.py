"""A chunk's upserts and increments as a staging table and a set-based merge, per database.

The bulk path (``batchline._arrow_merge``) loads a chunk's rows as they are, in order, into
a temporary table (COPY, executemany, LOAD DATA), and then moves them into the target with
statements that do what the row path's do (``_aggregate`` and the dialects' ``upsert`` and
``increment``), only on the server:

- ``Upsert``: the n-th row of each key in the n-th ``INSERT … SELECT … ON CONFLICT`` /
  ``ON DUPLICATE KEY UPDATE`` (``ROW_NUMBER() OVER (PARTITION BY key ORDER BY ord)``), the
  row path's rounds; a chunk of distinct keys is one statement with no window.
- ``Increment``: one ``INSERT … SELECT key, SUM(…) … GROUP BY key … ON CONFLICT … DO
  UPDATE SET c = t.c + new.c``; where the row has create-only columns (the first record's
  value wins) or sums floats (added in the records' order, as Python adds them), a window
  over the key in the records' order picks each key's first row instead of GROUP BY.

Keys are partitioned and ordered as Python compares them: text by code point (``COLLATE
"C"`` on PostgreSQL, ``CAST(… AS BINARY)`` on MySQL, whose ``_ci`` collations would merge
``'abc'`` and ``'ABC'``, which the row path keeps apart until the unique index meets them),
so rows reach the target in the row path's order, and concurrent writers lock keys in the
same order.

The staging table holds the chunk's columns with the types the row path's values take on
their way (PostgreSQL: the column's base type, the ``unnest`` cast's, so a decimal is summed
before the column's scale rounds it, as in Python; MySQL: the target's own types, which
``LOAD DATA`` must convert exactly as the target would; SQLite: no type, values stay as
bound), and an ordinal that numbers the rows in the order they were loaded.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

from ._base import Dialect, Executor, TableInfo

__all__ = ["ORD", "increment", "stage", "upsert"]

#: The staging table's ordinal column, and the round number's (names no column is
#: expected to have; the bulk path leaves a chunk holding one to the row path).
ORD = "batchline.ord"
ROUND = "batchline.n"
#: The alias of the rows being merged (the ``EXCLUDED`` of MySQL's ON DUPLICATE KEY).
_NEW = "batchline_new"


def stage(dialect: Dialect, ex: Executor, t: TableInfo, columns: Sequence[str]) -> TableInfo:
    """Make the staging table for ``columns`` of ``t`` ready and empty, in the open
    transaction; return it (to load the chunk into). PostgreSQL and SQLite keep it for the
    connection's life (emptied at commit, dropped if the transaction that made it rolls
    back: empty at each chunk's start); MySQL's temporary tables ignore transactions, so
    it is made anew each time."""
    q = dialect.quote
    types = [t.columns.get(c, "") for c in columns]
    digest = hashlib.sha1(json.dumps([t.sql, list(columns), types]).encode()).hexdigest()
    name = f"batchline_merge_{digest[:12]}"
    cols = dialect.columns_sql(columns)
    if dialect.name == "postgresql":
        sql = f"pg_temp.{q(name)}"
        defs = ", ".join(f"{q(c)} {ty}" for c, ty in zip(columns, types))
        ex.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {q(name)} ({defs}, "
            f"{q(ORD)} bigint GENERATED ALWAYS AS IDENTITY) ON COMMIT DELETE ROWS"
        )
    elif dialect.name == "sqlite":
        sql = f"temp.{q(name)}"
        ex.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {q(name)} ({q(ORD)} INTEGER PRIMARY KEY, {cols})"
        )
        ex.execute(f"DELETE FROM {sql}")  # noqa: S608
    else:
        sql = q(name)
        ex.execute(f"DROP TEMPORARY TABLE IF EXISTS {sql}")
        ex.execute(
            f"CREATE TEMPORARY TABLE {sql} ({q(ORD)} BIGINT AUTO_INCREMENT PRIMARY KEY) "  # noqa: S608
            f"SELECT {cols} FROM {t.sql} LIMIT 0"
        )
    return TableInfo(name=name, sql=sql, columns=dict(zip(columns, types)))


class _Keys:
    """How one dialect partitions and orders a key as Python compares it (``text``: the key
    columns that hold text)."""

    def __init__(self, dialect: Dialect, key: Sequence[str], text: Sequence[str]) -> None:
        self.dialect = dialect
        self.key = key
        self.text = frozenset(text)

    def expr(self, column: str, prefix: str = "", sort: bool = False) -> str:
        ref = prefix + self.dialect.quote(column)
        if column not in self.text or self.dialect.name == "sqlite":
            return ref  # (SQLite: an untyped column compares text as BINARY, by code point)
        if self.dialect.name == "postgresql":
            # (its equality is by bytes already: only the order is the collation's)
            return f'{ref} COLLATE "C"' if sort else ref
        return f"CAST({ref} AS BINARY)"

    def partition(self) -> str:
        return ", ".join(self.expr(c) for c in self.key)

    def order(self) -> str:
        return ", ".join(self.expr(c, f"{_NEW}.", sort=True) for c in self.key)

    def first(self) -> str:
        """``ROW_NUMBER()`` of each row among its key's, in the order the rows came."""
        q = self.dialect.quote
        over = f"PARTITION BY {self.partition()} ORDER BY {q(ORD)}"
        return f"ROW_NUMBER() OVER ({over}) AS {q(ROUND)}"


def _merge(
    dialect: Dialect,
    ex: Executor,
    t: TableInfo,
    columns: Sequence[str],
    source: str,
    keys: _Keys,
    sets: Sequence[tuple[str, str]],
    params: Sequence[object] = (),
) -> None:
    """``INSERT INTO t (columns) SELECT * FROM (source) AS new ORDER BY key`` and, on a
    key that is there, ``sets``: (column, expression of ``{old}`` and ``{new}``) or none
    (leave the row as it is)."""
    q = dialect.quote
    head = (
        f"INSERT INTO {t.sql} ({dialect.columns_sql(columns)}) "  # noqa: S608
        f"SELECT * FROM ({source}) AS {_NEW}"
    )
    # (SQLite: a WHERE keeps the upsert's ON from being read as a join's)
    order = f" WHERE true ORDER BY {keys.order()}"
    if dialect.name in ("postgresql", "sqlite"):
        new = "EXCLUDED" if dialect.name == "postgresql" else "excluded"
    else:
        new = _NEW  # (MySQL: the SELECT's row, by its alias)
    parts = [
        f"{q(c)} = " + expr.format(old=f"{t.sql}.{q(c)}", new=f"{new}.{q(c)}") for c, expr in sets
    ]
    if dialect.name in ("postgresql", "sqlite"):
        action = f"DO UPDATE SET {', '.join(parts)}" if parts else "DO NOTHING"
        tail = f" ON CONFLICT ({dialect.columns_sql(keys.key)}) {action}"
    else:
        k = f"{t.sql}.{q(keys.key[0])}"
        tail = f" ON DUPLICATE KEY UPDATE {', '.join(parts) if parts else f'{k} = {k}'}"
    ex.execute(head + order + tail, list(params))


def upsert(
    dialect: Dialect,
    ex: Executor,
    t: TableInfo,
    staged: TableInfo,
    key: Sequence[str],
    columns: Sequence[str],
    update: Sequence[str],
    rounds: int,
    text: Sequence[str],
) -> None:
    """Move the staged rows into ``t`` as ``Dialect.upsert`` would, in the row path's rounds
    (``rounds``: the most rows any key has among them)."""
    keys = _Keys(dialect, key, text)
    cols = dialect.columns_sql(columns)
    sets = [(c, "{new}") for c in update]
    if rounds <= 1:
        _merge(dialect, ex, t, columns, f"SELECT {cols} FROM {staged.sql}", keys, sets)  # noqa: S608
        return
    n = dialect.quote(ROUND)
    source = (
        f"SELECT {cols} FROM (SELECT {cols}, {keys.first()} FROM {staged.sql}) AS s "  # noqa: S608
        f"WHERE s.{n} = {dialect.placeholder}"
    )
    for i in range(1, rounds + 1):
        _merge(dialect, ex, t, columns, source, keys, sets, [i])


def increment(
    dialect: Dialect,
    ex: Executor,
    t: TableInfo,
    staged: TableInfo,
    key: Sequence[str],
    columns: Sequence[str],
    add: Sequence[str],
    text: Sequence[str],
    in_order: bool,
) -> None:
    """Move the staged rows into ``t`` as ``Dialect.increment`` (``create=True``) would
    move the row path's totals: ``add`` summed per key, the other columns the key's first
    row's. ``in_order``: sum in the rows' order (floats, which Python adds one by one)."""
    q = dialect.quote
    keys = _Keys(dialect, key, text)
    others = [c for c in columns if c not in key and c not in add]
    order = [*key, *add, *others]
    if not others and not in_order:
        if dialect.name in ("mysql", "mariadb"):
            # grouped by code point, so each group's text is one (MIN: the one)
            picked = [f"MIN({q(c)}) AS {q(c)}" if c in keys.text else q(c) for c in key]
        else:
            picked = [q(c) for c in key]
        sums = [f"SUM({q(c)}) AS {q(c)}" for c in add]
        source = (
            f"SELECT {', '.join([*picked, *sums])} FROM {staged.sql} "  # noqa: S608
            f"GROUP BY {keys.partition()}"
        )
    else:
        frame = (
            f" ORDER BY {q(ORD)} ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING"
            if in_order
            else ""
        )
        sums = [f"SUM({q(c)}) OVER (PARTITION BY {keys.partition()}{frame}) AS {q(c)}" for c in add]
        inner = ", ".join([*(q(c) for c in key), *(q(c) for c in others), *sums, keys.first()])
        source = (
            f"SELECT {dialect.columns_sql(order)} FROM (SELECT {inner} FROM {staged.sql}) AS s "  # noqa: S608
            f"WHERE s.{q(ROUND)} = 1"
        )
    _merge(dialect, ex, t, order, source, keys, [(c, "{old} + {new}") for c in add])
