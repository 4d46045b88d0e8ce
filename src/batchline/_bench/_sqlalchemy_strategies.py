"""The strategies a user writes with SQLAlchemy (and pandas on top of it), slowest first.

Why a module of its own: these are the ways people load without batchline, each the way its
user would really write it: one line at a time, the seed's batch, pandas ``to_sql``, and
SQLAlchemy Core with cached lookups and aggregated totals.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import sqlalchemy as sa

from .._errors import ConfigError
from ._workload import TX_COLUMNS, Workload

__all__ = ["increment_statement", "pandas_to_sql", "seed_batch", "sequential", "sqlalchemy_core"]


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
        for chunk in work.chunks(work.chunk_size):
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
        for chunk in work.chunks(work.chunk_size):
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
