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
#: The table an upsert's rows are numbered into, by round (when a key repeats).
_ROUNDS = "batchline_rounds"
#: MySQL's table of each key's first row (and an increment's totals).
_FIRSTS = "batchline_firsts"
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

    def partition(self, window: bool = False) -> str:
        """The key to group by, or (``window``) to partition a window by: there PostgreSQL
        sorts, and sorts faster by bytes (the same equality)."""
        return ", ".join(self.expr(c, sort=window) for c in self.key)

    def order(self) -> str:
        return ", ".join(self.expr(c, f"{_NEW}.", sort=True) for c in self.key)

    def first(self) -> str:
        """``ROW_NUMBER()`` of each row among its key's, in the order the rows came."""
        q = self.dialect.quote
        over = f"PARTITION BY {self.partition(window=True)} ORDER BY {q(ORD)}"
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


def _temporary(dialect: Dialect, ex: Executor, name: str, select: str, index: str) -> str:
    """A temporary table made anew from ``select``, indexed on ``index``, for the rest of
    the transaction; its SQL name. (MySQL cannot read one temporary table twice in one
    statement: what a statement needs twice goes through one of these.)"""
    q = dialect.quote
    if dialect.name == "postgresql":
        table = f"pg_temp.{q(name)}"
        ex.execute(f"DROP TABLE IF EXISTS {table}")
        ex.execute(f"CREATE TEMP TABLE {q(name)} ON COMMIT DROP AS {select}")
        ex.execute(f"CREATE INDEX ON {table} ({index})")
    elif dialect.name == "sqlite":
        table = f"temp.{q(name)}"
        ex.execute(f"DROP TABLE IF EXISTS {table}")
        ex.execute(f"CREATE TEMP TABLE {q(name)} AS {select}")
        ex.execute(f"CREATE INDEX temp.{q(name + '_i')} ON {q(name)} ({index})")
    else:
        table = q(name)
        ex.execute(f"DROP TEMPORARY TABLE IF EXISTS {table}")
        ex.execute(f"CREATE TEMPORARY TABLE {table} (INDEX ({index})) {select}")
    return table


def _firsts(dialect: Dialect, ex: Executor, staged: TableInfo, keys: _Keys, sums: str) -> str:
    """MySQL: each key's first row's ordinal (``f``), and ``sums`` (``SUM(c) AS c, …``), in
    a temporary table of their own (a GROUP BY: MariaDB's windows cost several times as
    much); its SQL name."""
    select = (
        f"SELECT MIN({dialect.quote(ORD)}) AS f{sums} FROM {staged.sql} "  # noqa: S608
        f"GROUP BY {keys.partition()}"
    )
    return _temporary(dialect, ex, _FIRSTS, select, "f")


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
    q, n = dialect.quote, dialect.quote(ROUND)
    keys = _Keys(dialect, key, text)
    cols = dialect.columns_sql(columns)
    sets = [(c, "{new}") for c in update]
    if rounds <= 1:
        _merge(dialect, ex, t, columns, f"SELECT {cols} FROM {staged.sql}", keys, sets)  # noqa: S608
        return
    # round 1: each key's first row; the others (fewer) numbered by a window into rounds
    # 2, 3, … in a table that each round's statement reads
    ordinal = q(ORD)
    picked = ", ".join(f"s.{q(c)}" for c in columns)
    if dialect.name in ("mysql", "mariadb"):
        firsts = _firsts(dialect, ex, staged, keys, "")
        first = f"SELECT {picked} FROM {staged.sql} AS s JOIN {firsts} AS f ON s.{ordinal} = f.f"  # noqa: S608
        rest = (
            f"SELECT {picked}, s.{ordinal} FROM {staged.sql} AS s "  # noqa: S608
            f"LEFT JOIN {firsts} AS f ON s.{ordinal} = f.f WHERE f.f IS NULL"
        )
    else:
        mins = f"SELECT MIN({ordinal}) FROM {staged.sql} GROUP BY {keys.partition()}"  # noqa: S608
        first = f"SELECT {cols} FROM {staged.sql} WHERE {ordinal} IN ({mins})"  # noqa: S608
        rest = f"SELECT {cols}, {ordinal} FROM {staged.sql} WHERE {ordinal} NOT IN ({mins})"  # noqa: S608
    _merge(dialect, ex, t, columns, first, keys, sets)
    numbered = f"SELECT {cols}, {keys.first()} FROM ({rest}) AS d"  # noqa: S608
    table = _temporary(dialect, ex, _ROUNDS, numbered, n)
    # (numbered from 1 among the rows after each key's first: round 2 is their 1)
    source = f"SELECT {cols} FROM {table} WHERE {n} = {dialect.placeholder}"  # noqa: S608
    for i in range(2, rounds + 1):
        _merge(dialect, ex, t, columns, source, keys, sets, [i - 1])


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
    sums = [f"SUM({q(c)}) AS {q(c)}" for c in add]
    mysql = dialect.name in ("mysql", "mariadb")
    if not others and not in_order:
        # grouped by code point on MySQL, so each group's text is one (MIN: the one)
        picked = [f"MIN({q(c)}) AS {q(c)}" if mysql and c in keys.text else q(c) for c in key]
        source = (
            f"SELECT {', '.join([*picked, *sums])} FROM {staged.sql} "  # noqa: S608
            f"GROUP BY {keys.partition()}"
        )
    elif dialect.name == "sqlite" and not in_order:
        # SQLite takes a group's bare columns from the row of its one MIN(): the first
        first = ", ".join([*(q(c) for c in key), *sums, f"MIN({q(ORD)})", *map(q, others)])
        source = (
            f"SELECT {dialect.columns_sql(order)} FROM (SELECT {first} FROM {staged.sql} "  # noqa: S608
            f"GROUP BY {keys.partition()}) AS s"
        )
    elif mysql and not in_order:
        firsts = _firsts(dialect, ex, staged, keys, "".join(f", {s}" for s in sums))
        picked = [f"f.{q(c)}" if c in add else f"s.{q(c)}" for c in order]
        source = (
            f"SELECT {', '.join(picked)} FROM {firsts} AS f "  # noqa: S608
            f"JOIN {staged.sql} AS s ON s.{q(ORD)} = f.f"
        )
    else:
        frame = (
            f" ORDER BY {q(ORD)} ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING"
            if in_order
            else ""
        )
        over = f"PARTITION BY {keys.partition(window=True)}{frame}"
        totals = [f"SUM({q(c)}) OVER ({over}) AS {q(c)}" for c in add]
        inner = ", ".join([*(q(c) for c in key), *(q(c) for c in others), *totals, keys.first()])
        source = (
            f"SELECT {dialect.columns_sql(order)} FROM (SELECT {inner} FROM {staged.sql}) AS s "  # noqa: S608
            f"WHERE s.{q(ROUND)} = 1"
        )
    _merge(dialect, ex, t, order, source, keys, [(c, "{old} + {new}") for c in add])
