"""The strategies written straight on the driver: the hand-written peer and the floor.

Why a module of its own: these are the figures batchline is held against. ``hand-written``
is what an expert writes instead of using batchline (issue 12): a dict cache, tuples, COPY
on PostgreSQL, summed increments. The floor is the same minus the lookups, the Python per
line and the commits between chunks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ._workload import TX_COLUMNS, Workload

__all__ = ["floor", "hand_written"]


@dataclass(frozen=True)
class _HandSql:
    """The hand-written loader's statements for one database (identifiers quoted once)."""

    dialect: str
    p: str  # the driver's placeholder
    catalog: str
    transactions: str
    inventory: str
    columns: str

    @classmethod
    def build(cls, engine: sa.Engine, work: Workload) -> _HandSql:
        prep = engine.dialect.identifier_preparer
        tables = work.tables
        return cls(
            dialect=engine.dialect.name,
            p="?" if engine.dialect.paramstyle == "qmark" else "%s",
            catalog=prep.format_table(tables.catalog),
            transactions=prep.format_table(tables.transactions),
            inventory=prep.format_table(tables.inventory),
            columns=", ".join(prep.quote(c) for c in TX_COLUMNS),
        )

    @property
    def postgres(self) -> bool:
        return self.dialect == "postgresql"

    # identifiers come from the dialect's quoting; values are bound
    def find(self, n: int) -> str:
        if self.postgres:
            return f"SELECT sku, id FROM {self.catalog} WHERE sku = ANY(%s)"  # noqa: S608
        marks = ", ".join([self.p] * n)
        return f"SELECT sku, id FROM {self.catalog} WHERE sku IN ({marks})"  # noqa: S608

    @property
    def create(self) -> str:
        head = f"INSERT INTO {self.catalog} (sku, name) VALUES ({self.p}, {self.p})"  # noqa: S608
        if self.dialect in ("mysql", "mariadb"):
            return f"{head} ON DUPLICATE KEY UPDATE sku = sku"
        return f"{head} ON CONFLICT (sku) DO NOTHING"

    @property
    def insert(self) -> str:
        if self.postgres:
            return f"COPY {self.transactions} ({self.columns}) FROM STDIN"
        marks = ", ".join([self.p] * len(TX_COLUMNS))
        return f"INSERT INTO {self.transactions} ({self.columns}) VALUES ({marks})"  # noqa: S608

    @property
    def add(self) -> str:
        if self.postgres:
            inv = self.inventory
            return (
                f"INSERT INTO {inv} (item_id, quantity)"  # noqa: S608
                " SELECT * FROM unnest(%s::int[], %s::bigint[])"
                f" ON CONFLICT (item_id) DO UPDATE SET quantity = {inv}.quantity"
                " + EXCLUDED.quantity"
            )
        return _floor_totals_sql(self.dialect, self.inventory, self.p)


def _get_or_create(
    cur: Any, sql: _HandSql, cache: dict[str, int], chunk: Sequence[dict[str, Any]]
) -> None:
    """Put every SKU of ``chunk`` in ``cache``: one SELECT for those not cached yet, and for
    any still missing one insert (named after its first line) and a second SELECT."""
    missing = {line["sku"] for line in chunk}.difference(cache)
    if not missing:
        return
    cache.update(_find(cur, sql, missing))
    missing.difference_update(cache)
    if missing:
        names: dict[str, str] = {}
        for line in chunk:
            if line["sku"] in missing:
                names.setdefault(line["sku"], line["description"])
        cur.executemany(sql.create, sorted(names.items()))
        cache.update(_find(cur, sql, missing))


def _find(cur: Any, sql: _HandSql, skus: set[str]) -> list[tuple[str, int]]:
    keys = sorted(skus)
    cur.execute(sql.find(len(keys)), (keys,) if sql.postgres else keys)
    return list(cur.fetchall())


def hand_written(engine: sa.Engine, work: Workload) -> None:
    """Hand-written on the driver: dict cache, tuples, COPY, summed increments, 5,000 a chunk.

    The peer of issue 12: get-or-create of catalog ids batched per chunk into a dict, rows
    as tuples, COPY on PostgreSQL (``executemany`` on SQLite; on MySQL/MariaDB PyMySQL's
    ``executemany``, which sends multi-row VALUES), each chunk's increments summed per item
    in Python and sent at once in key order (``unnest`` on PostgreSQL, an upsert
    ``executemany`` elsewhere), ``--tuned-chunk-size`` rows (5,000) per transaction.
    """
    sql = _HandSql.build(engine, work)
    insert, add = sql.insert, sql.add
    cache: dict[str, int] = {}
    raw = engine.raw_connection()
    try:
        with contextlib.closing(raw.driver_connection.cursor()) as cur:  # type: ignore[union-attr]
            for chunk in work.chunks(work.tuned_chunk_size):
                _get_or_create(cur, sql, cache, chunk)
                rows = [
                    (
                        line["invoice_id"],
                        line["line_no"],
                        cache[line["sku"]],
                        line["quantity"],
                        line["unit_price"],
                    )
                    for line in chunk
                ]
                totals: dict[int, int] = {}
                get = totals.get
                for row in rows:
                    totals[row[2]] = get(row[2], 0) + row[3]
                keys = sorted(totals)
                if sql.postgres:
                    with cur.copy(insert) as copy:
                        for row in rows:
                            copy.write_row(row)
                    cur.execute(add, (keys, [totals[k] for k in keys]))
                else:
                    cur.executemany(insert, rows)
                    cur.executemany(add, [(k, totals[k]) for k in keys])
                raw.commit()
    finally:
        raw.close()


def floor(engine: sa.Engine, work: Workload) -> None:
    """The limit: rows already mapped, in one transaction (COPY on PostgreSQL)."""
    rows, totals = work.mapped, work.totals
    tables = work.tables
    prep = engine.dialect.identifier_preparer
    tx = prep.format_table(tables.transactions)
    inv = prep.format_table(tables.inventory)
    cols = ", ".join(prep.quote(c) for c in TX_COLUMNS)
    raw = engine.raw_connection()
    try:
        with contextlib.closing(raw.driver_connection.cursor()) as cur:  # type: ignore[union-attr]
            if engine.dialect.name == "postgresql":
                with cur.copy(f"COPY {tx} ({cols}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
                # identifiers come from the dialect's quoting; values are bound
                cur.execute(
                    f"INSERT INTO {inv} (item_id, quantity)"  # noqa: S608
                    " SELECT * FROM unnest(%s::int[], %s::bigint[])"
                    f" ON CONFLICT (item_id) DO UPDATE SET quantity = {inv}.quantity"
                    " + EXCLUDED.quantity",
                    (list(totals), list(totals.values())),
                )
            else:
                p = "?" if engine.dialect.paramstyle == "qmark" else "%s"
                marks = ", ".join([p] * len(TX_COLUMNS))
                cur.executemany(f"INSERT INTO {tx} ({cols}) VALUES ({marks})", rows)  # noqa: S608
                cur.executemany(_floor_totals_sql(engine.dialect.name, inv, p), totals.items())
        raw.commit()
    finally:
        raw.close()


def _floor_totals_sql(dialect: str, inv: str, p: str) -> str:
    # identifiers come from the dialect's quoting; values are bound
    head = f"INSERT INTO {inv} (item_id, quantity) VALUES ({p}, {p})"  # noqa: S608
    if dialect in ("mysql", "mariadb"):
        return f"{head} ON DUPLICATE KEY UPDATE quantity = quantity + VALUES(quantity)"
    return f"{head} ON CONFLICT (item_id) DO UPDATE SET quantity = quantity + excluded.quantity"
