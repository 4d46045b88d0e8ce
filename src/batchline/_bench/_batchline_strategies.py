"""batchline itself as a bench strategy: the public API on the invoice workload.

Why a module of its own: the bench scripts (``bench/``) time and profile this one strategy
with chosen chunk sizes, through :func:`load_with_batchline`; the bench compares its default,
tuned and tuple-emitting forms.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ._workload import Workload

if TYPE_CHECKING:
    from collections.abc import Callable

    import batchline as bl

__all__ = [
    "batchline_default",
    "batchline_tuned",
    "batchline_values",
    "invoice_map",
    "load_with_batchline",
]


def load_with_batchline(
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

    map_fn = invoice_map(work, catalog, values=values)
    result = pipeline.run(work.lines, map_fn)
    if result.status != "success" or result.items_processed != len(work.lines):
        raise RuntimeError(f"batchline did not load every line: {result.to_dict()}")


def batchline_default(engine: sa.Engine, work: Workload) -> None:
    """batchline's public API with default settings (Lookup, Insert, Increment)."""
    load_with_batchline(engine, work, None)  # chunks sized by time


def batchline_tuned(engine: sa.Engine, work: Workload) -> None:
    """batchline with larger chunks (``--tuned-chunk-size``, 5,000 by default)."""
    load_with_batchline(engine, work, work.tuned_chunk_size)


def batchline_values(engine: sa.Engine, work: Workload) -> None:
    """batchline's defaults, the mapping emitting rows as tuples with ``columns=``."""
    load_with_batchline(engine, work, None, values=True)


def invoice_map(
    work: Workload, catalog: bl.Lookup, *, values: bool = False
) -> Callable[[dict[str, Any], bl.Out], None]:
    """The bench's mapping of an invoice line: a catalog reference by SKU, a transaction
    row and an inventory increment; rows as dicts, or with ``values`` as tuples in declared
    column order (``Out``'s form for hot loops). Also measured alone (bench/instructions.py)."""
    tx, inv = work.tables.transactions.name, work.tables.inventory.name
    tx_columns = ("invoice_id", "line_no", "item_id", "quantity", "unit_cost")
    inv_columns = ("item_id", "quantity")

    def map_values(record: dict[str, Any], out: bl.Out) -> None:
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

    return map_values if values else map_line
