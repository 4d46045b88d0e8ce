"""The strategies the bench compares, each the way its user would really write it.

Every strategy takes the same :class:`Workload` (invoice lines over a pre-seeded catalog) and
must leave the same database state: one transactions row per line, and per item the sum of
its quantities in inventory. Only the floor gets the lines already mapped; the others do their
own lookups by SKU, as a real load has to.

``hand-written`` is the peer batchline has to beat (issue 12): what an expert writes instead of
using batchline, straight on the driver. The floor is the same minus the lookups, the Python
per line and the commits between chunks.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa

from .._errors import ConfigError
from ._workload import TX_COLUMNS, Workload

__all__ = [
    "STRATEGIES",
    "Strategy",
    "batchline_default",
    "batchline_tuned",
    "floor",
    "hand_written",
    "increment_statement",
    "pandas_to_sql",
    "seed_batch",
    "sequential",
    "sqlalchemy_core",
    "strategy_named",
]

T = TypeVar("T")
StrategyFn = Callable[[sa.Engine, Workload], None]


@dataclass(frozen=True)
class Strategy:
    """A named way of loading the workload.

    A strategy with ``sample`` (a multiple of ``--sample``) is slow per line and runs on that
    many first lines only; its records/s come from the sample.
    """

    name: str
    run: StrategyFn
    sample: int = 0
    imports: tuple[str, ...] = ()  # modules to import before timing (not part of the load)

    @property
    def sampled(self) -> bool:
        return self.sample > 0

    @property
    def description(self) -> str:
        return (self.run.__doc__ or "").strip().splitlines()[0]


def _chunks(seq: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(seq), size):
        yield seq[start : start + size]


def _tx_row(line: dict[str, Any], item_id: int) -> dict[str, Any]:
    return {
        "invoice_id": line["invoice_id"],
        "line_no": line["line_no"],
        "item_id": item_id,
        "quantity": line["quantity"],
        "unit_cost": line["unit_price"],
    }


def _find_item(work: Workload) -> sa.Select[Any]:
    cat = work.tables.catalog
    return sa.select(cat.c.id).where(cat.c.sku == sa.bindparam("sku"))


def _add_to_item(work: Workload) -> sa.Update:
    inv = work.tables.inventory
    return (
        sa.update(inv)
        .where(inv.c.item_id == sa.bindparam("iid"))
        .values(quantity=inv.c.quantity + sa.bindparam("q"))
    )


def _add_or_create(conn: sa.Connection, work: Workload, item_id: int, quantity: int) -> None:
    """UPDATE the item's row; INSERT it when there was none (the portable upsert)."""
    if conn.execute(_add_to_item(work), {"iid": item_id, "q": quantity}).rowcount == 0:
        conn.execute(sa.insert(work.tables.inventory), {"item_id": item_id, "quantity": quantity})


def increment_statement(dialect: sa.Dialect, inventory: sa.Table) -> sa.Insert:
    """Insert-or-add for inventory rows, in the dialect's upsert syntax (for executemany)."""
    if dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        lite = sqlite_insert(inventory)
        return lite.on_conflict_do_update(
            index_elements=[inventory.c.item_id],
            set_={"quantity": inventory.c.quantity + lite.excluded.quantity},
        )
    if dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        pg = pg_insert(inventory)
        return pg.on_conflict_do_update(
            index_elements=[inventory.c.item_id],
            set_={"quantity": inventory.c.quantity + pg.excluded.quantity},
        )
    if dialect.name in ("mysql", "mariadb"):
        from sqlalchemy.dialects.mysql import insert as mysql_insert

        my = mysql_insert(inventory)
        return my.on_duplicate_key_update(quantity=inventory.c.quantity + my.inserted.quantity)
    raise ConfigError(f"the bench has no upsert for {dialect.name}")


def _totals_rows(totals: dict[int, int]) -> list[dict[str, int]]:
    return [{"item_id": k, "quantity": v} for k, v in totals.items()]


# --- the strategies ---------------------------------------------------------------------------


def sequential(engine: sa.Engine, work: Workload) -> None:
    """Per line: select the item, insert the transaction, add to the inventory; commit."""
    find, tx = _find_item(work), work.tables.transactions
    with engine.connect() as conn:
        for line in work.lines:
            item_id = int(conn.execute(find, {"sku": line["sku"]}).scalar_one())
            conn.execute(sa.insert(tx), _tx_row(line, item_id))
            _add_or_create(conn, work, item_id, line["quantity"])
            conn.commit()


def seed_batch(engine: sa.Engine, work: Workload) -> None:
    """The seed's batch: per-line select, a multi-row insert per chunk, one update per item."""
    find, tx = _find_item(work), work.tables.transactions
    with engine.connect() as conn:
        for chunk in _chunks(work.lines, work.chunk_size):
            rows = []
            totals: Counter[int] = Counter()
            for line in chunk:
                item_id = int(conn.execute(find, {"sku": line["sku"]}).scalar_one())
                rows.append(_tx_row(line, item_id))
                totals[item_id] += line["quantity"]
            conn.execute(sa.insert(tx).values(rows))
            for item_id, quantity in totals.items():
                _add_or_create(conn, work, item_id, quantity)
            conn.commit()


def pandas_to_sql(engine: sa.Engine, work: Workload) -> None:
    """pandas: a dict of SKUs up front, to_sql(method="multi") in chunks, then the totals."""
    import pandas as pd

    tables = work.tables
    with engine.begin() as conn:
        query = sa.select(tables.catalog.c.sku, tables.catalog.c.id)
        skus = dict(conn.execute(query).all())
        frame = pd.DataFrame(work.lines)
        frame["item_id"] = frame["sku"].map(skus)
        frame["unit_cost"] = pd.to_numeric(frame["unit_price"])
        frame = frame[list(TX_COLUMNS)]
        frame.to_sql(
            tables.transactions.name,
            conn,
            if_exists="append",
            index=False,
            method="multi",
            chunksize=work.chunk_size,
        )
        totals = frame.groupby("item_id")["quantity"].sum()
        rows = [{"item_id": int(k), "quantity": int(v)} for k, v in totals.items()]
        conn.execute(increment_statement(conn.dialect, tables.inventory), rows)


def sqlalchemy_core(engine: sa.Engine, work: Workload) -> None:
    """SQLAlchemy Core: cached lookups, insert executemany per chunk, aggregated totals."""
    tables = work.tables
    cat = tables.catalog
    increment = increment_statement(engine.dialect, tables.inventory)
    cache: dict[str, int] = {}
    with engine.connect() as conn:
        for chunk in _chunks(work.lines, work.chunk_size):
            missing = {line["sku"] for line in chunk} - cache.keys()
            if missing:
                found = conn.execute(sa.select(cat.c.sku, cat.c.id).where(cat.c.sku.in_(missing)))
                cache.update(dict(found.all()))
            rows = []
            totals: Counter[int] = Counter()
            for line in chunk:
                item_id = cache[line["sku"]]
                rows.append(_tx_row(line, item_id))
                totals[item_id] += line["quantity"]
            conn.execute(sa.insert(tables.transactions), rows)
            conn.execute(increment, _totals_rows(totals))
            conn.commit()


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
            for chunk in _chunks(work.lines, work.tuned_chunk_size):
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


def _batchline(
    engine: sa.Engine, work: Workload, chunk_size: int | None, *, values: bool = False
) -> None:
    import batchline as bl

    tables = work.tables
    tx, inv = tables.transactions.name, tables.inventory.name
    catalog = bl.Lookup(tables.catalog.name, key="sku", returns="id")
    pipeline = bl.Pipeline(
        engine,
        writes=[bl.Insert(tx), bl.Increment(inv, key="item_id", columns=["quantity"])],
        lookups=[catalog],
        chunk_size=chunk_size,
        state_prefix=tables.state_prefix,
    )

    tx_columns = ("invoice_id", "line_no", "item_id", "quantity", "unit_cost")
    inv_columns = ("item_id", "quantity")

    def map_values(record: dict[str, Any], out: bl.Out) -> None:
        # the same rows as tuples in declared column order (Out's form for hot loops)
        item_id = catalog.ref(sku=record["sku"])
        quantity = record["quantity"]
        out.insert(
            tx,
            (record["invoice_id"], record["line_no"], item_id, quantity, record["unit_price"]),
            columns=tx_columns,
        )
        out.increment(inv, (item_id, quantity), columns=inv_columns)

    def map_line(record: dict[str, Any], out: bl.Out) -> None:
        item_id = catalog.ref(sku=record["sku"])
        out.insert(
            tx,
            {
                "invoice_id": record["invoice_id"],
                "line_no": record["line_no"],
                "item_id": item_id,
                "quantity": record["quantity"],
                "unit_cost": record["unit_price"],
            },
        )
        out.increment(inv, {"item_id": item_id, "quantity": record["quantity"]})

    result = pipeline.run(work.lines, map_values if values else map_line)
    if result.status != "success" or result.items_processed != len(work.lines):
        raise RuntimeError(f"batchline did not load every line: {result.to_dict()}")


def batchline_default(engine: sa.Engine, work: Workload) -> None:
    """batchline's public API with default settings (Lookup, Insert, Increment)."""
    _batchline(engine, work, None)  # chunks sized by time


def batchline_tuned(engine: sa.Engine, work: Workload) -> None:
    """batchline with larger chunks (``--tuned-chunk-size``, 5,000 by default)."""
    _batchline(engine, work, work.tuned_chunk_size)


def batchline_values(engine: sa.Engine, work: Workload) -> None:
    """batchline's defaults, the mapping emitting rows as tuples with ``columns=``."""
    _batchline(engine, work, None, values=True)


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


STRATEGIES: tuple[Strategy, ...] = (
    Strategy("sequential", sequential, sample=1),
    Strategy("seed-batch", seed_batch, sample=2),
    Strategy("pandas", pandas_to_sql, imports=("pandas",)),
    Strategy("sqlalchemy", sqlalchemy_core),
    Strategy("hand-written", hand_written),
    Strategy("batchline", batchline_default),
    Strategy("batchline-tuned", batchline_tuned),
    Strategy("batchline-values", batchline_values),
    Strategy("floor", floor),
)


def strategy_named(name: str) -> Strategy:
    """The strategy called ``name``; a clear error listing the choices otherwise."""
    for strategy in STRATEGIES:
        if strategy.name == name:
            return strategy
    choices = ", ".join(s.name for s in STRATEGIES)
    raise ConfigError(f"no strategy {name!r}; choose from {choices}")
