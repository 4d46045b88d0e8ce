"""What bad rows cost the bulk path: a DataFrame with none, and with 0.1% and 1% of rows a
CHECK refuses, through ``bl.load`` on SQLite and PostgreSQL, median of three, each into a
fresh table. A chunk the database refuses in bulk is sent again through the row path
(``batchline._arrow_write``), so the cost grows with the share of chunks that hold a bad row.

    python bench/arrow_bad_rows.py [ROWS] [POSTGRES_URL]

``--copy-keys``: a lineitem-like CSV (default 600,000 rows) loaded with ``bl.load`` into a
PostgreSQL table with a primary key, clean and with 0.1% duplicate keys, the duplicates
once with the COPY left out of its bad rows (``_copy_isolation``) and once redone as rows
(as before it), interleaved, median of three, row counts checked:

    python bench/arrow_bad_rows.py --copy-keys [ROWS] [POSTGRES_URL]
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


def lineitem_csv(path: str, rows: int, dup_every: int | None) -> int:
    """A lineitem-like CSV; every ``dup_every``-th row repeats an earlier key. Returns the
    number of duplicates."""
    dups = 0
    with open(path, "w") as fh:
        fh.write("id,orderkey,partkey,quantity,price,discount,shipdate,flag,comment\n")
        for i in range(rows):
            key = i
            if dup_every and i % dup_every == dup_every // 2:
                key, dups = i - 17, dups + 1
            fh.write(
                f"{key},{i // 4},{(i * 7919) % 200000},{1 + i % 50},{(i % 10000) * 1.37:.2f},"
                f"0.0{i % 10},1995-{1 + i % 12:02d}-{1 + i % 28:02d},{'ANR'[i % 3]},"
                f"carefully final deposits {i % 977} haggle\n"
            )
    return dups


def copy_keys(rows: int, url: str) -> None:
    from batchline import _copy_isolation

    ddl = (
        "CREATE TABLE {} (id BIGINT PRIMARY KEY, orderkey BIGINT, partkey BIGINT, "
        "quantity BIGINT, price NUMERIC(12,2), discount NUMERIC(4,2), shipdate DATE, "
        "flag TEXT, comment TEXT)"
    )
    default = _copy_isolation.MAX_LEFT_OUT
    with tempfile.TemporaryDirectory() as tmp:
        clean, dirty = f"{tmp}/clean.csv", f"{tmp}/dups.csv"
        lineitem_csv(clean, rows, None)
        dups = lineitem_csv(dirty, rows, 1000)
        cases = [("clean", clean, default), ("0.1% dup keys, COPY isolation", dirty, default),
                 ("0.1% dup keys, redone as rows", dirty, 0)]  # fmt: skip
        times: dict[str, list[float]] = {label: [] for label, _, _ in cases}
        for _ in range(3):
            for label, path, left_out in cases:
                engine = sa.create_engine(url)
                with engine.begin() as conn:
                    conn.exec_driver_sql("DROP TABLE IF EXISTS li_keys")
                    conn.exec_driver_sql(ddl.format("li_keys"))
                    conn.exec_driver_sql("DELETE FROM batchline_jobs WHERE name = 'li_keys'")
                    conn.exec_driver_sql("DELETE FROM batchline_dead_letters WHERE job = 'li_keys'")
                _copy_isolation.MAX_LEFT_OUT = left_out
                began = time.perf_counter()
                result = bl.load(path, url, table="li_keys", job="li_keys")
                times[label].append(time.perf_counter() - began)
                with engine.begin() as conn:
                    landed = conn.exec_driver_sql("SELECT count(*) FROM li_keys").scalar()
                engine.dispose()
                bad = 0 if path == clean else dups
                assert landed == rows - bad and result.items_failed == bad, (landed, result)
        _copy_isolation.MAX_LEFT_OUT = default
        base = statistics.median(times["clean"])
        for label, _, _ in cases:
            seconds = statistics.median(times[label])
            print(f"{label:<32} {seconds:6.2f} s  {seconds / base:5.2f}x clean")
        print(f"({rows:,} rows, {dups:,} duplicate keys)")


def main() -> None:
    if sys.argv[1:2] == ["--copy-keys"]:
        rows = int(sys.argv[2]) if len(sys.argv) > 2 else 600_000
        pg = (
            sys.argv[3]
            if len(sys.argv) > 3
            else "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        )
        copy_keys(rows, pg)
        return
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
