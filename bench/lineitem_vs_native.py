"""`batchline load` of a TPC-H-shaped lineitem CSV against each database's native loader.

Issue 13's targets, side by side in one run, interleaved, row counts verified:

- PostgreSQL: `batchline load` vs `psql \\copy` into a pre-created table;
- SQLite: vs pandas `read_csv` + `to_sql(chunksize=5000)` and vs the sqlite3 shell's
  `.import --csv`;
- MariaDB: vs `LOAD DATA LOCAL INFILE`.

The CSV is generated here, deterministically (seeded), with lineitem's 16 columns and value
shapes (keys, decimals with two places, one-letter flags, dates, words): dbgen is not on the
machine. No field needs quoting (as in dbgen's own output).

    python bench/lineitem_vs_native.py [ROWS] [--rounds N] [--bad PERCENT] [--only pg,sqlite,mysql]

ROWS defaults to 600,572 (TPC-H SF 0.1). ``--bad 1`` also times a copy of the file where 1%
of the rows hold a quantity that is not a number (loaded with ``--type
l_quantity=decimal(18,2)``, so batchline dead-letters them at stage map; the native loaders
are not run on it). Servers: BATCHLINE_TEST_POSTGRES / BATCHLINE_TEST_MYSQL as for
the tests; each run works in a schema/database of its own and drops it.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta

PG_URL = os.environ.get(
    "BATCHLINE_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
MY_URL = os.environ.get("BATCHLINE_TEST_MYSQL", "mysql+pymysql://root@127.0.0.1:3306/test")
PSQL = ["psql", "-q", "-h", "127.0.0.1", "-U", "postgres", "test"]
#: The bad file's load: its quantity column declared, so the 1% that are not numbers (as
#: many as inference tolerates in a sample) stay outliers, dead-lettered at stage map.
BAD = ["-q", "--type", "l_quantity=decimal(18,2)"]
PANDAS = "SQLite pandas read_csv + to_sql(5000)"
BL = "import sys; from batchline.cli import main; sys.argv[0] = 'batchline'; main()"
MYSQL = ["mysql", "-h", "127.0.0.1", "-u", "root", "--local-infile=1"]

COLUMNS = (
    "l_orderkey,l_partkey,l_suppkey,l_linenumber,l_quantity,l_extendedprice,l_discount,"
    "l_tax,l_returnflag,l_linestatus,l_shipdate,l_commitdate,l_receiptdate,l_shipinstruct,"
    "l_shipmode,l_comment"
)
DDL = (
    "(l_orderkey BIGINT, l_partkey BIGINT, l_suppkey BIGINT, l_linenumber BIGINT, "
    "l_quantity NUMERIC(18,2), l_extendedprice NUMERIC(18,2), l_discount NUMERIC(18,2), "
    "l_tax NUMERIC(18,2), l_returnflag TEXT, l_linestatus TEXT, l_shipdate DATE, "
    "l_commitdate DATE, l_receiptdate DATE, l_shipinstruct TEXT, l_shipmode TEXT, "
    "l_comment TEXT)"
)
WORDS = [
    *("furiously", "regular", "deposits", "sleep", "carefully", "final", "packages"),
    *("haggle", "slyly", "ironic", "accounts", "boost", "quickly", "express", "requests"),
    *("wake", "blithely", "pending", "instructions", "nag", "even", "theodolites"),
    *("cajole", "bold", "pinto", "beans", "integrate"),
]
INSTRUCT = ["DELIVER IN PERSON", "COLLECT COD", "NONE", "TAKE BACK RETURN"]
MODES = ["REG AIR", "AIR", "RAIL", "SHIP", "TRUCK", "MAIL", "FOB"]


def generate(path: str, rows: int, bad: float = 0.0) -> None:
    rnd = random.Random(13)
    start = date(1992, 1, 1)
    order, line = 1, 0
    with open(path, "w") as f:
        f.write(COLUMNS + "\n")
        for i in range(rows):
            line += 1
            if line > rnd.randint(1, 7):
                order += rnd.randint(1, 4)
                line = 1
            qty = rnd.randint(1, 50)
            price = rnd.randint(90000, 10500000) / 100
            ship = start + timedelta(days=rnd.randrange(2400))
            flag = "R" if ship < date(1995, 6, 17) else "N"
            quantity = f"{qty}.00" if not bad or rnd.random() >= bad else f"x{qty}"
            f.write(
                f"{order},{rnd.randint(1, 20000)},{rnd.randint(1, 1000)},{line},{quantity},"
                f"{price * qty:.2f},0.{rnd.randint(0, 10):02d},0.0{rnd.randint(0, 8)},"
                f"{flag},{'F' if flag == 'R' else 'O'},{ship},"
                f"{ship + timedelta(days=rnd.randint(-30, 60))},"
                f"{ship + timedelta(days=rnd.randint(1, 30))},{rnd.choice(INSTRUCT)},"
                f"{rnd.choice(MODES)},{' '.join(rnd.choices(WORDS, k=rnd.randint(2, 6)))}\n"
            )
            del i


def timed(cmd: list[str]) -> float:
    """Seconds ``cmd`` took; exit 3 (some records dead-lettered) counts as done."""
    began = time.perf_counter()
    code = subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL).returncode
    if code not in (0, 3):
        raise SystemExit(f"{cmd[:5]} exited {code}")
    return time.perf_counter() - began


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("rows", nargs="?", type=int, default=600_572)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--bad", type=float, default=0.0, help="percent of bad rows, extra file")
    ap.add_argument("--only", default="pg,sqlite,mysql")
    args = ap.parse_args()
    only = set(args.only.split(","))
    work = tempfile.mkdtemp(prefix="bl_lineitem_")
    schema = f"bl_lineitem_{os.getpid()}"
    pg = f"{PG_URL}?options=-csearch_path%3D{schema}"
    my = f"{MY_URL.rsplit('/', 1)[0]}/{schema}"
    csv = os.path.join(work, "lineitem.csv")
    generate(csv, args.rows)
    bad_csv = None
    if args.bad:
        bad_csv = os.path.join(work, "lineitem_bad.csv")
        generate(bad_csv, args.rows, args.bad / 100)
    size = os.path.getsize(csv)
    print(f"rows {args.rows:,}, {size / 1e6:.1f} MB, {args.rounds} rounds, in {work}")
    bl = [sys.executable, "-c", BL]
    times: dict[str, list[float]] = {}
    counts: dict[str, int] = {}

    def psql(*sql: str) -> str:
        cmd = [*PSQL, "-tA", "-c", f"SET search_path={schema}"]
        for s in sql:
            cmd += ["-c", s]
        return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()

    def mysql(sql: str, db: str | None = schema) -> str:
        cmd = [*MYSQL, "-N"] + ([db] if db else []) + ["-e", sql]
        return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()

    def sqlite_count(path: str, table: str) -> int:
        out = subprocess.run(
            ["sqlite3", path, f"SELECT count(*) FROM {table}"],  # noqa: S608
            capture_output=True,
            text=True,
            check=True,
        )
        return int(out.stdout)

    def pg_count(table: str) -> int:
        return int(psql(f"SELECT count(*) FROM {table}").split()[-1])  # noqa: S608

    def record(name: str, seconds: float, count: int) -> None:
        times.setdefault(name, []).append(seconds)
        counts[name] = count
        print(f"  {name:<48} {seconds:7.2f} s  rows {count:,}", flush=True)

    try:
        if "pg" in only:
            subprocess.run([*PSQL, "-c", f"CREATE SCHEMA {schema}"], check=True)
        if "mysql" in only:
            mysql(f"CREATE DATABASE {schema}", db=None)
        for r in range(args.rounds):
            print(f"round {r + 1}")
            if "pg" in only:
                psql("DROP TABLE IF EXISTS native, bl, bl_bad", f"CREATE TABLE native {DDL}")
                t = timed(
                    [
                        *PSQL,
                        "-c",
                        f"SET search_path={schema}",
                        "-c",
                        f"\\copy native FROM '{csv}' CSV HEADER",
                    ]
                )
                record("PostgreSQL psql \\copy", t, pg_count("native"))
                t = timed([*bl, "load", csv, "--db", pg, "--table", "bl", "-q"])
                record("PostgreSQL batchline load", t, pg_count("bl"))
                if bad_csv:
                    t = timed([*bl, "load", bad_csv, "--db", pg, "--table", "bl_bad", *BAD])
                    record(f"PostgreSQL batchline load, {args.bad}% bad", t, pg_count("bl_bad"))
            if "sqlite" in only:
                dbs = {f: os.path.join(work, f) for f in ("native.db", "bl.db", "pd.db", "bad.db")}
                for path in dbs.values():
                    if os.path.exists(path):
                        os.remove(path)
                native = dbs["native.db"]
                subprocess.run(["sqlite3", native, f"CREATE TABLE native {DDL}"], check=True)
                t = timed(["sqlite3", native, f".import --csv --skip 1 {csv} native"])
                record("SQLite sqlite3 .import --csv", t, sqlite_count(native, "native"))
                code = (
                    "import pandas as pd, sqlalchemy as sa, sys; "
                    "e = sa.create_engine('sqlite:///' + sys.argv[2]); "
                    "pd.read_csv(sys.argv[1]).to_sql('lineitem', e, index=False, chunksize=5000)"
                )
                t = timed([sys.executable, "-c", code, csv, dbs["pd.db"]])
                record(PANDAS, t, sqlite_count(dbs["pd.db"], "lineitem"))
                url = f"sqlite:///{dbs['bl.db']}"
                t = timed([*bl, "load", csv, "--db", url, "--table", "bl", "-q"])
                record("SQLite batchline load", t, sqlite_count(dbs["bl.db"], "bl"))
                if bad_csv:
                    url = f"sqlite:///{dbs['bad.db']}"
                    t = timed([*bl, "load", bad_csv, "--db", url, "--table", "bl", *BAD])
                    record(
                        f"SQLite batchline load, {args.bad}% bad", t, sqlite_count(url[10:], "bl")
                    )
            if "mysql" in only:
                ddl = DDL.replace("TEXT", "VARCHAR(64)")
                mysql(f"DROP TABLE IF EXISTS native, bl, bl_bad; CREATE TABLE native {ddl}")
                load = (
                    f"LOAD DATA LOCAL INFILE '{csv}' INTO TABLE native "
                    "FIELDS TERMINATED BY ',' IGNORE 1 LINES"
                )
                t = timed([*MYSQL, schema, "-e", load])
                record(
                    "MariaDB LOAD DATA LOCAL INFILE", t, int(mysql("SELECT count(*) FROM native"))
                )
                t = timed([*bl, "load", csv, "--db", my, "--table", "bl", "-q"])
                record("MariaDB batchline load", t, int(mysql("SELECT count(*) FROM bl")))
                if bad_csv:
                    t = timed([*bl, "load", bad_csv, "--db", my, "--table", "bl_bad", *BAD])
                    count = int(mysql("SELECT count(*) FROM bl_bad"))
                    record(f"MariaDB batchline load, {args.bad}% bad", t, count)
    finally:
        if "pg" in only:
            subprocess.run([*PSQL, "-c", f"DROP SCHEMA IF EXISTS {schema} CASCADE"], check=False)
        if "mysql" in only:
            subprocess.run([*MYSQL, "-e", f"DROP DATABASE IF EXISTS {schema}"], check=False)
        shutil.rmtree(work, ignore_errors=True)
    print("\nmedian of", args.rounds)
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in med.items():
        print(f"  {k:<48} {v:7.2f} s  rows {counts[k]:,}")
    pairs = [
        ("PostgreSQL batchline load", "PostgreSQL psql \\copy"),
        ("SQLite batchline load", PANDAS),
        ("SQLite batchline load", "SQLite sqlite3 .import --csv"),
        ("MariaDB batchline load", "MariaDB LOAD DATA LOCAL INFILE"),
    ]
    for ours, theirs in pairs:
        if ours in med and theirs in med:
            print(f"  {ours} vs {theirs}: {med[theirs] / med[ours]:.2f}x")
    for db in ("PostgreSQL", "SQLite", "MariaDB"):
        clean, bad = f"{db} batchline load", f"{db} batchline load, {args.bad}% bad"
        if clean in med and bad in med:
            print(f"  {db}: {args.bad}% bad rows cost {med[bad] / med[clean]:.2f}x a clean load")


if __name__ == "__main__":
    main()
