"""`batchline load` of a TPC-H-shaped lineitem CSV against each database's native loader.

Issue 13's targets, side by side in one run, interleaved, row counts verified:

- PostgreSQL: `batchline load` vs `psql \\copy` into a pre-created table;
- SQLite: vs pandas `read_csv` + `to_sql(chunksize=5000)` and vs the sqlite3 shell's
  `.import --csv`;
- MariaDB: vs `LOAD DATA LOCAL INFILE`.

A thin wrapper: the generator, the loaders, the timing and the counting are
`batchline bench --load` (batchline._bench._load_bench); this script gives it the
three test servers at once and the figures' old command line.

    python bench/lineitem_vs_native.py [ROWS] [--rounds N] [--bad PERCENT] [--only pg,sqlite,mysql]
        [--json PATH]

ROWS defaults to 600,572 (TPC-H SF 0.1). ``--bad 1`` also loads a copy where 1% of the
rows hold a quantity that is not a number (loaded with ``--type l_quantity=decimal(18,2)``,
so batchline dead-letters them at stage map). Servers: BATCHLINE_TEST_POSTGRES /
BATCHLINE_TEST_MYSQL as for the tests; each database's run works in a schema/database of its
own and drops it. The same as:

    batchline bench --load --db sqlite:///... --db $BATCHLINE_TEST_POSTGRES \\
        --db $BATCHLINE_TEST_MYSQL --lines ROWS --repeats N --bad PERCENT
"""

from __future__ import annotations

import argparse
import os
import sys

from rich.console import Console

from batchline._bench import LoadBenchOptions, run_load_bench
from batchline._bench._lineitem import SF_0_1_ROWS
from batchline._bench._load_report import render_load
from batchline._bench._report import write_json

URLS = {
    "pg": os.environ.get(
        "BATCHLINE_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    ),
    "sqlite": None,  # a temporary SQLite file
    "mysql": os.environ.get("BATCHLINE_TEST_MYSQL", "mysql+pymysql://root@127.0.0.1:3306/test"),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("rows", nargs="?", type=int, default=SF_0_1_ROWS)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--bad", type=float, default=0.0, help="percent of bad rows, extra file")
    ap.add_argument("--only", default="pg,sqlite,mysql")
    ap.add_argument("--json", help="write the report here")
    args = ap.parse_args()
    only = args.only.split(",")
    options = LoadBenchOptions(
        dbs=tuple(URLS[name] for name in URLS if name in only),
        rows=args.rows,
        rounds=args.rounds,
        bad=args.bad,
    )
    report = run_load_bench(options, lambda msg: print(msg, flush=True))
    report["command"] = " ".join(["python", *sys.argv])
    render_load(report, Console(width=150))
    if args.json:
        write_json(report, args.json)
    sys.exit(0 if report["ok"] else 1)


if __name__ == "__main__":
    main()
