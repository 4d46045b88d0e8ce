"""Records/s and statement counts of the DESIGN.md sample at N records on one database.

    python bench/design_sample.py --db sqlite:///sample.db --records 100000
    python bench/design_sample.py --db postgresql+psycopg://postgres@127.0.0.1/test --records 100000

The tables are dropped and recreated first (catalog, transactions, inventory and the
batchline state tables): point it at a scratch database.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

import batchline as bl
import batchline.typing
from batchline._invoices import create_schema
from batchline.testing import capture_statements


def records(n: int, skus: int) -> Iterator[dict[str, Any]]:
    for i in range(n):
        yield {
            "invoice_id": i // 5,
            "line_no": i % 5 + 1,
            "sku": f"SKU-{(i * 7919) % skus:06d}",
            "description": f"Product {(i * 7919) % skus}",
            "quantity": i % 7 + 1,
            "unit_price": Decimal("2.50"),
        }


def design_pipeline(db: str, chunk_size: int) -> tuple[bl.Pipeline, bl.typing.MapFunction]:
    """The DESIGN.md sample: a creating catalog lookup, an insert and an increment per line.
    (Also used by ``mysql_throughput.py``, beside it.)"""
    catalog = bl.Lookup("catalog", key="sku", returns="id", create=True)
    pipeline = bl.Pipeline(
        db,
        writes=[
            bl.Insert("transactions"),
            bl.Increment("inventory", key="item_id", columns=["quantity"]),
        ],
        lookups=[catalog],
        chunk_size=chunk_size,
    )

    def map_line(record: dict[str, Any], out: bl.Out) -> None:
        item_id = catalog.ref(sku=record["sku"], name=record["description"])
        out.insert(
            "transactions",
            {
                "invoice_id": record["invoice_id"],
                "line_no": record["line_no"],
                "item_id": item_id,
                "quantity": record["quantity"],
                "unit_cost": record["unit_price"],
            },
        )
        out.increment("inventory", {"item_id": item_id, "quantity": record["quantity"]})

    return pipeline, map_line


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", default="sqlite:///design-sample.db")
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--skus", type=int, default=3000)
    ap.add_argument("--chunk-size", type=int, default=500)
    args = ap.parse_args()

    engine = sa.create_engine(bl.Pipeline(args.db, writes=[bl.Insert("x")]).engine.url)
    with engine.begin() as conn:
        for t in ("batchline_jobs", "batchline_ledger", "batchline_dead_letters"):
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {t}"))
    create_schema(engine, drop=True)
    engine.dispose()

    pipeline, map_line = design_pipeline(args.db, args.chunk_size)
    started = time.perf_counter()
    with capture_statements(pipeline) as captured:
        result = pipeline.run(
            records(args.records, args.skus),
            map_line,
            idempotency_key=lambda r: (r["invoice_id"], r["line_no"]),
        )
    elapsed = time.perf_counter() - started
    print(
        json.dumps(
            {
                "db": pipeline.url,
                "records": args.records,
                "status": result.status,
                "seconds": round(elapsed, 3),
                "records_per_second": round(args.records / elapsed),
                "statements": len(captured),
                "records_per_statement": round(args.records / len(captured), 1),
                "chunks": result.chunks_committed,
            }
        )
    )


if __name__ == "__main__":
    main()
