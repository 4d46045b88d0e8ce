"""`batchline load --upsert` and `--increment`: the bulk path (staged, then merged) against
the row path it replaces, side by side in one run, interleaved, results checked equal.

The row path is another checkout's ``src/`` (``--before``, e.g. ``git archive main src |
tar -x -C /tmp/before``), run through PYTHONPATH; the bulk path is this tree. Each round
loads the same CSV once with each, in alternating order, into a fresh table, on each
database; then the two tables must hold the same rows (count, key count, total quantity and
a checksum of every column). The CSV is generated here (seeded): ``sku`` drawn from
``--keys`` distinct values, so keys repeat inside a chunk and across chunks, ``qty`` an
integer, ``price`` a decimal with two places, ``name`` text (on an increment: create-only).

    python bench/merge_vs_rows.py --before /tmp/before/src [ROWS] [--keys N] [--rounds N]
        [--only pg,sqlite,mysql] [--modes upsert,increment]

Servers: BATCHLINE_TEST_POSTGRES / BATCHLINE_TEST_MYSQL as for the tests; each run works in
a schema/database of its own and drops it.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

PG_URL = os.environ.get(
    "BATCHLINE_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
MY_URL = os.environ.get("BATCHLINE_TEST_MYSQL", "mysql+pymysql://root@127.0.0.1:3306/test")
BL = "import sys; from batchline.cli import main; sys.argv[0] = 'batchline'; main()"
MODES = {
    "upsert": ["--upsert", "--key", "sku"],
    "increment": ["--increment", "--key", "sku", "--columns", "qty"],
}


def generate(path: str, rows: int, keys: int) -> None:
    rng = random.Random(13)
    with open(path, "w") as f:
        f.write("sku,qty,price,name\n")
        for i in range(rows):
            sku = f"SKU-{rng.randrange(keys):06d}"
            price = f"{rng.randrange(100, 100_000) // 100}.{rng.randrange(100):02d}"
            f.write(f"{sku},{rng.randrange(-20, 50)},{price},item {i}\n")


def checksum(url: str, table: str) -> tuple[object, ...]:
    """What a load left, in a form equal between the two paths exactly when the rows are."""
    import sqlalchemy as sa

    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            got = conn.exec_driver_sql(
                f"SELECT sku, qty, price, name FROM {table} ORDER BY sku"  # noqa: S608
            ).fetchall()
    finally:
        engine.dispose()
    return (len(got), sum(r[1] for r in got), hash(tuple(tuple(map(str, r)) for r in got)))


def drop(url: str, table: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
            for state in ("batchline_jobs", "batchline_dead_letters", "batchline_ledger"):
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {state}")
    finally:
        engine.dispose()


def run(url: str, path: str, table: str, mode: str, src: str | None) -> float:
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = src
    cmd = [sys.executable, "-c", BL, "load", path, "--db", url, "--table", table, "-q"]
    began = time.perf_counter()
    subprocess.run([*cmd, *MODES[mode]], check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - began


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rows", nargs="?", type=int, default=200_000)
    ap.add_argument("--before", required=True, help="the row path's src/ directory")
    ap.add_argument("--keys", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", default="pg,sqlite,mysql")
    ap.add_argument("--modes", default="upsert,increment")
    args = ap.parse_args()
    schema = f"blmerge_{os.getpid()}"
    work = tempfile.mkdtemp()
    path = os.path.join(work, "stock.csv")
    generate(path, args.rows, args.keys)
    urls = {}
    only = args.only.split(",")
    import sqlalchemy as sa

    if "pg" in only:
        admin = sa.create_engine(PG_URL, poolclass=sa.pool.NullPool)
        with admin.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        urls["PostgreSQL"] = f"{PG_URL}?options=-csearch_path%3D{schema}"
    if "sqlite" in only:
        urls["SQLite"] = f"sqlite:///{os.path.join(work, 'bench.db')}"
    if "mysql" in only:
        admin = sa.create_engine(MY_URL, poolclass=sa.pool.NullPool)
        with admin.begin() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {schema}")
        urls["MariaDB"] = f"{MY_URL.rsplit('/', 1)[0]}/{schema}"
    print(f"{args.rows:,} rows, {args.keys:,} keys; load average {os.getloadavg()}")
    times: dict[tuple[str, str, str], list[float]] = {}
    try:
        for r in range(args.rounds):
            for name, url in urls.items():
                for mode in args.modes.split(","):
                    order = [("bulk", None), ("rows", args.before)]
                    if r % 2:
                        order.reverse()
                    sums = {}
                    for label, src in order:
                        table = f"t_{mode}_{label}"
                        drop(url, table)
                        seconds = run(url, path, table, mode, src)
                        times.setdefault((name, mode, label), []).append(seconds)
                        sums[label] = checksum(url, table)
                    assert sums["bulk"] == sums["rows"], (name, mode, sums)
                    print(
                        f"round {r + 1} {name} {mode}: bulk "
                        f"{times[name, mode, 'bulk'][-1]:.2f} s, rows "
                        f"{times[name, mode, 'rows'][-1]:.2f} s ({sums['bulk'][0]:,} keys, "
                        "equal)",
                        flush=True,
                    )
    finally:
        if "pg" in only:
            with sa.create_engine(PG_URL, poolclass=sa.pool.NullPool).begin() as conn:
                conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        if "mysql" in only:
            with sa.create_engine(MY_URL, poolclass=sa.pool.NullPool).begin() as conn:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {schema}")
    print(f"\nload average {os.getloadavg()}; median of {args.rounds}, interleaved")
    print("| database | mode | row path | bulk | speed-up |")
    print("|---|---|---|---|---|")
    for name in urls:
        for mode in args.modes.split(","):
            rows = statistics.median(times[name, mode, "rows"])
            bulk = statistics.median(times[name, mode, "bulk"])
            print(f"| {name} | `--{mode}` | {rows:.2f} s | {bulk:.2f} s | {rows / bulk:.1f}x |")


if __name__ == "__main__":
    main()
