"""`batchline load` of a JSON Lines lineitem, this checkout against another, side by side.

The lineitem CSV of ``batchline bench --load`` (``_bench._lineitem.generate``) written as
JSON Lines: keys and line numbers as JSON integers, everything else as strings (the decimals
stay exact, as in the CSV); ``--numbers`` writes quantities and prices as JSON numbers
instead (float columns). Each round loads the file with BEFORE_SRC on ``PYTHONPATH`` (e.g.
``git archive main src | tar -x -C /tmp/before``) and with this checkout, interleaved, into
SQLite and PostgreSQL, and checks the row count.

    python bench/jsonl_load.py [ROWS] --before /tmp/before/src [--rounds 2] [--numbers]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from batchline._bench._lineitem import SF_0_1_ROWS, generate

HERE = Path(__file__).resolve().parent.parent
BL = 'import sys; from batchline.cli import main; sys.argv[0] = "batchline"; main()'
PG = os.environ.get("BATCHLINE_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
INTEGERS = {"l_orderkey", "l_partkey", "l_suppkey", "l_linenumber"}
NUMBERS = {"l_quantity", "l_extendedprice", "l_discount", "l_tax"}


def to_jsonl(source: Path, target: Path, numbers: bool) -> None:
    with source.open(newline="") as f, target.open("w") as out:
        for row in csv.DictReader(f):
            record: dict[str, object] = {}
            for name, value in row.items():
                if name in INTEGERS or (numbers and name in NUMBERS):
                    record[name] = json.loads(value)
                else:
                    record[name] = value
            out.write(json.dumps(record) + "\n")


def count(url: str, table: str) -> int:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        # (the bench's own table name, not input)
        n = conn.execute(sa.text(f'SELECT count(*) FROM "{table}"')).scalar_one()  # noqa: S608
    engine.dispose()
    return int(n)


def run(src: Path, path: Path, url: str, table: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(src)}
    args = [sys.executable, "-c", BL, "load", str(path), "-t", table, "--db", url, "--quiet"]
    start = time.perf_counter()
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    took = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{src}: exit {done.returncode}: {done.stderr[-2000:]}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("rows", nargs="?", type=int, default=SF_0_1_ROWS)
    parser.add_argument("--before", required=True, type=Path)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--numbers", action="store_true")
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp())
    generate(work / "lineitem.csv", options.rows)
    path = work / "lineitem.jsonl"
    to_jsonl(work / "lineitem.csv", path, options.numbers)
    schema = f"bljsonl_{os.getpid()}"
    engine = sa.create_engine(PG, poolclass=sa.pool.NullPool)  # (a fresh connection each)
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    pg = f"{PG}?options=-csearch_path%3D{schema}"
    print(f"{options.rows} rows, {path.stat().st_size / 1e6:.0f} MB; {os.getloadavg()=}")
    times: dict[tuple[str, str], list[float]] = {}
    try:
        for r in range(options.rounds):
            for db in ("sqlite", "postgresql"):
                for name, src in (("before", options.before), ("after", HERE / "src")):
                    table = f"li_{name}_{r}"
                    url = f"sqlite:///{work}/{name}_{r}.db" if db == "sqlite" else pg
                    took = run(src, path, url, table)
                    assert count(url, table) == options.rows, (db, name)
                    times.setdefault((db, name), []).append(took)
                    load = os.getloadavg()[0]
                    print(f"round {r} {db:10} {name:6} {took:6.2f} s  load {load:.2f}")
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()
        shutil.rmtree(work)
    for db in ("sqlite", "postgresql"):
        before, after = min(times[(db, "before")]), min(times[(db, "after")])
        print(f"{db:10} before {before:6.2f} s  after {after:6.2f} s  {before / after:.1f}x")


if __name__ == "__main__":
    main()
