"""What bad rows cost the bulk path: a DataFrame with none, and with 0.1% and 1% of rows a
CHECK refuses, through ``bl.load`` on SQLite and PostgreSQL, median of three, each into a
fresh table. A chunk the database refuses in bulk is sent again through the row path
(``batchline._arrow_write``), so the cost grows with the share of chunks that hold a bad row.

    python bench/arrow_bad_rows.py [ROWS] [POSTGRES_URL]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time

import pandas as pd
import sqlalchemy as sa

import batchline as bl


def frame(rows: int, bad_every: int | None) -> pd.DataFrame:
    qty = [(i % 50) + 1 for i in range(rows)]
    if bad_every:
        for i in range(bad_every // 2, rows, bad_every):
            qty[i] = -1  # the CHECK refuses it
    return pd.DataFrame(
        {
            "id": range(rows),
            "sku": [f"SKU{i % 5000:05d}" for i in range(rows)],
            "qty": qty,
            "price": [(i % 1000) / 7 for i in range(rows)],
            "note": [f"item {i} note" for i in range(rows)],
        }
    )


def once(url: str, data: pd.DataFrame, n: int) -> tuple[float, int]:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS bad_{n}")
        conn.exec_driver_sql(
            f"CREATE TABLE bad_{n} (id BIGINT PRIMARY KEY, sku TEXT, qty BIGINT CHECK (qty > 0), "
            "price DOUBLE PRECISION, note TEXT)"
        )
    engine.dispose()
    began = time.perf_counter()
    result = bl.load(data, url, table=f"bad_{n}")
    return time.perf_counter() - began, result.items_failed


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    pg = sys.argv[2] if len(sys.argv) > 2 else "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    with tempfile.TemporaryDirectory() as tmp:
        for name, url in (("SQLite", f"sqlite:///{tmp}/bad.db"), ("PostgreSQL", pg)):
            base = None
            for label, every in (("clean", None), ("0.1% bad", 1000), ("1% bad", 100)):
                data = frame(rows, every)
                runs = [once(url, data, i) for i in range(3)]
                seconds = statistics.median(r[0] for r in runs)
                base = base or seconds
                print(
                    f"{name:<11} {label:<9} {seconds:6.2f} s  {seconds / base:5.2f}x clean  "
                    f"dead-lettered {runs[0][1]:,}"
                )


if __name__ == "__main__":
    main()
