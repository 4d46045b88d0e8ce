"""Records/s of the DESIGN.md invoice sample on MySQL/MariaDB: batchline against one at a time.

Why: issue 5 asks for the number on MariaDB, measured on the same server both ways. The
workload is ``batchline._invoices`` (a Zipf-skewed catalog, misspelt descriptions, a few
products new to the catalog): a get-or-create ``Lookup`` on ``catalog``, ``Insert`` into
``transactions``, ``Increment`` of ``inventory``.

- batchline: the DESIGN.md pipeline over ``--records`` lines (default 100,000).
- sequential: what the code looked like before, one record per transaction: look the SKU
  up, create it if missing, insert the line, add to the inventory, commit; over a sample
  (``--sequential-records``, default 5,000), since it is slow. Records/s is the fair
  comparison; both runs start from the same freshly seeded catalog in their own database.

``--load-data`` also measures plain inserts of the ``transactions`` rows as multi-row
``INSERT … VALUES`` (what the dialect does) against ``LOAD DATA LOCAL INFILE`` from a
temporary file per chunk, at two chunk sizes.

Usage::

    .venv/bin/python bench/mysql_throughput.py [--url mysql+pymysql://root@127.0.0.1/test]
        [--records 100000] [--sequential-records 5000] [--load-data] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import pymysql
import sqlalchemy as sa
from design_sample import design_pipeline  # beside this script in bench/

from batchline._database import Session, redact_url
from batchline._dialects._mysql import MySQLDialect
from batchline._invoices import create_schema, make_catalog, make_lines, seed_catalog

__all__ = ["main"]

DEFAULT_URL = os.environ.get("BATCHLINE_TEST_MYSQL", "mysql+pymysql://root@127.0.0.1:3306/test")
NEW_PRODUCT_EVERY = 250


@contextmanager
def scratch_database(url: str, label: str) -> Iterator[str]:
    """A fresh database on the server of ``url``, dropped afterwards."""
    admin = sa.create_engine(url, poolclass=sa.pool.NullPool)
    name = f"bt_bench_{label}_{secrets.token_hex(3)}"
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE `{name}`")
    try:
        yield sa.make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
        admin.dispose()


def prepare(url: str) -> list[Any]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    catalog = make_catalog()
    create_schema(engine, drop=True)
    seed_catalog(engine, catalog)
    engine.dispose()
    return catalog


def state(url: str) -> dict[str, Any]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        lines, qty = conn.exec_driver_sql("SELECT COUNT(*), SUM(quantity) FROM transactions").one()
        inventory = conn.exec_driver_sql("SELECT SUM(quantity) FROM inventory").scalar()
        products = conn.exec_driver_sql("SELECT COUNT(*) FROM catalog").scalar()
    engine.dispose()
    return {
        "lines": int(lines),
        "quantity": int(qty or 0),
        "inventory": int(inventory or 0),
        "products": int(products or 0),
    }


def run_batchline(url: str, n: int, chunk_size: int) -> dict[str, Any]:
    catalog_rows = prepare(url)
    pipeline, map_line = design_pipeline(url, chunk_size)

    lines = make_lines(catalog_rows, n, new_product_every=NEW_PRODUCT_EVERY)
    started = time.perf_counter()
    result = pipeline.run(
        lines,
        map_line,
        job="bench",
        idempotency_key=lambda r: (r["invoice_id"], r["line_no"]),
    )
    seconds = time.perf_counter() - started
    pipeline.close()
    if result.status != "success":
        raise SystemExit(f"batchline run did not succeed: {result.to_dict()}")
    return {
        "records": n,
        "seconds": round(seconds, 3),
        "records_per_second": round(n / seconds, 1),
        "statements": result.statements,
        "state": state(url),
    }


def _pymysql(url: str, **kwargs: Any) -> pymysql.connections.Connection[Any]:
    u = sa.make_url(url)
    return pymysql.connect(
        host=u.host,
        port=u.port or 3306,
        user=u.username,
        password=u.password or "",
        database=u.database,
        **kwargs,
    )


def run_sequential(url: str, n: int) -> dict[str, Any]:
    """One record per transaction, the way a loop over records is usually written."""
    catalog_rows = prepare(url)
    conn = _pymysql(url)
    lines = make_lines(catalog_rows, n, new_product_every=NEW_PRODUCT_EVERY)
    started = time.perf_counter()
    with conn.cursor() as cur:
        for r in lines:
            cur.execute("SELECT id FROM catalog WHERE sku = %s", (r["sku"],))
            row = cur.fetchone()
            if row is None:
                cur.execute(
                    "INSERT INTO catalog (sku, name) VALUES (%s, %s)", (r["sku"], r["description"])
                )
                item_id = cur.lastrowid
            else:
                item_id = row[0]
            cur.execute(
                "INSERT INTO transactions (invoice_id, line_no, item_id, quantity, unit_cost) "
                "VALUES (%s, %s, %s, %s, %s)",
                (r["invoice_id"], r["line_no"], item_id, r["quantity"], Decimal(r["unit_price"])),
            )
            cur.execute(
                "UPDATE inventory SET quantity = quantity + %s WHERE item_id = %s",
                (r["quantity"], item_id),
            )
            if cur.rowcount == 0:
                cur.execute(
                    "INSERT INTO inventory (item_id, quantity) VALUES (%s, %s)",
                    (item_id, r["quantity"]),
                )
            conn.commit()
    seconds = time.perf_counter() - started
    conn.close()
    return {
        "records": n,
        "seconds": round(seconds, 3),
        "records_per_second": round(n / seconds, 1),
        "state": state(url),
    }


# -- LOAD DATA LOCAL INFILE against multi-row INSERT -------------------------------------------


def _tsv(value: Any) -> str:
    if value is None:
        return "\\N"
    text = str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def _insert_rows(n: int) -> tuple[list[str], list[tuple[Any, ...]]]:
    catalog = make_catalog()
    ids = {p.sku: p.id for p in catalog}
    cols = ["invoice_id", "line_no", "item_id", "quantity", "unit_cost"]
    rows = [
        (r["invoice_id"], r["line_no"], ids[r["sku"]], r["quantity"], Decimal(r["unit_price"]))
        for r in make_lines(catalog, n)
    ]
    return cols, rows


def measure_load_data(url: str, n: int, chunk_sizes: tuple[int, ...]) -> list[dict[str, Any]]:
    cols, rows = _insert_rows(n)
    out = []
    for chunk in chunk_sizes:
        # Multi-row INSERT through the dialect, one transaction per chunk.
        prepare(url)
        engine = sa.create_engine(url)
        dialect = MySQLDialect(engine)
        session = Session(engine, dialect)
        with engine.connect() as conn:
            table = dialect.reflect(conn, "transactions")
        started = time.perf_counter()
        for start in range(0, len(rows), chunk):
            session.begin()
            dialect.insert(session, table, cols, rows[start : start + chunk])
            session.commit()
        insert_s = time.perf_counter() - started
        session.close()
        engine.dispose()

        # LOAD DATA LOCAL INFILE, one temporary file and one transaction per chunk, with the
        # warning check that keeping the failure contract would need.
        prepare(url)
        with _pymysql(url, local_infile=True) as conn, conn.cursor() as cur:
            started = time.perf_counter()
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "chunk.tsv")
                for start in range(0, len(rows), chunk):
                    with open(path, "w", encoding="utf-8") as f:
                        f.writelines(
                            "\t".join(_tsv(v) for v in row) + "\n"
                            for row in rows[start : start + chunk]
                        )
                    cur.execute(
                        f"LOAD DATA LOCAL INFILE %s INTO TABLE transactions "
                        f"CHARACTER SET utf8mb4 ({', '.join(cols)})",
                        (path,),
                    )
                    # The OK packet's warning count (free; PyMySQL keeps it on the result).
                    if conn._result is not None and conn._result.warning_count:
                        cur.execute("SHOW WARNINGS")
                        raise SystemExit(f"LOAD DATA warnings: {cur.fetchall()[:3]}")
                    conn.commit()
            load_s = time.perf_counter() - started
        out.append(
            {
                "chunk_size": chunk,
                "rows": n,
                "insert_values_rows_per_second": round(n / insert_s, 1),
                "load_data_rows_per_second": round(n / load_s, 1),
                "load_data_speedup": round(insert_s / load_s, 2),
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--sequential-records", type=int, default=5_000)
    parser.add_argument("--chunk-size", type=int, default=500)
    parser.add_argument("--load-data", action="store_true", help="also measure LOAD DATA")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args()

    report: dict[str, Any] = {"server": redact_url(args.url), "load_before": os.getloadavg()[0]}
    engine = sa.create_engine(args.url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        report["version"] = conn.exec_driver_sql("SELECT VERSION()").scalar()
    engine.dispose()
    with scratch_database(args.url, "seq") as url:
        report["sequential"] = run_sequential(url, args.sequential_records)
    with scratch_database(args.url, "bl") as url:
        report["batchline"] = run_batchline(url, args.records, args.chunk_size)
    with scratch_database(args.url, "same") as url:  # same lines as the sequential run
        same = run_batchline(url, args.sequential_records, args.chunk_size)
    report["same_state_as_sequential"] = same["state"] == report["sequential"]["state"]
    report["ratio"] = round(
        report["batchline"]["records_per_second"] / report["sequential"]["records_per_second"], 1
    )
    if args.load_data:
        with scratch_database(args.url, "load") as url:
            report["load_data"] = measure_load_data(url, args.records, (500, 5000))
    report["load_after"] = os.getloadavg()[0]
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return
    seq, bat = report["sequential"], report["batchline"]
    print(
        f"server: {report['server']} ({report['version']}); machine load average "
        f"{report['load_before']:.1f} before, {report['load_after']:.1f} after"
    )
    print(
        f"one record at a time: {seq['records_per_second']:>10,.0f} records/s "
        f"({seq['records']:,} records in {seq['seconds']:.1f} s)"
    )
    print(
        f"batchline:            {bat['records_per_second']:>10,.0f} records/s "
        f"({bat['records']:,} records in {bat['seconds']:.1f} s, {bat['statements']:,} statements)"
    )
    print(
        f"ratio: {report['ratio']}x; same final state on the sample: "
        f"{report['same_state_as_sequential']}"
    )
    for m in report.get("load_data", []):
        print(
            f"plain insert, chunk {m['chunk_size']}: INSERT VALUES "
            f"{m['insert_values_rows_per_second']:,.0f} rows/s, LOAD DATA LOCAL "
            f"{m['load_data_rows_per_second']:,.0f} rows/s ({m['load_data_speedup']}x)"
        )


if __name__ == "__main__":
    main()
