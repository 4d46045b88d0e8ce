"""Several ``batchline load`` runners of one job on one file, started at staggers.

The outside audit's scenario: two processes with the same ``--job`` on the same file, half
a second apart, with no idempotency key. Before the job lock both applied the file (40,000
rows for 20,000 lines on PostgreSQL). This prints, per database and stagger, the runners'
exit codes and the rows against the lines, and the job row's counters.

    python bench/concurrent_runners.py [--lines 20000] [--runners 2] [--staggers 0,0.1,0.5,1]
        [--db sqlite --db postgresql+psycopg://postgres@127.0.0.1/test
         --db mysql+pymysql://root@127.0.0.1:3306/test]
"""

from __future__ import annotations

import argparse
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

DEFAULT_DBS = [
    "sqlite",
    "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    "mysql+pymysql://root@127.0.0.1:3306/test",
]


def one(url: str, csv: Path, runners: int, stagger: float, lines: int) -> str:
    table = f"cr_{secrets.token_hex(4)}"
    job = f"job-{table}"
    cmd = [sys.executable, "-m", "batchline.cli", "load", str(csv), "-t", table]
    cmd += ["--db", url, "--job", job, "-q"]
    procs = []
    for i in range(runners):
        if i:
            time.sleep(stagger)
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    codes = []
    for proc in procs:
        proc.communicate(timeout=600)
        codes.append(proc.returncode)
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            q = engine.dialect.identifier_preparer.quote
            rows, distinct = conn.execute(
                sa.text(f"SELECT COUNT(*), COUNT(DISTINCT id) FROM {q(table)}")  # noqa: S608
            ).one()
            processed = conn.execute(
                sa.text("SELECT processed FROM batchline_jobs WHERE name = :j"), {"j": job}
            ).scalar()
            conn.execute(sa.text(f"DROP TABLE {q(table)}"))
            conn.execute(sa.text("DELETE FROM batchline_jobs WHERE name = :j"), {"j": job})
    finally:
        engine.dispose()
    ok = rows == distinct == lines == processed
    return (
        f"| {engine.dialect.name} | {runners} | {stagger:g} s | {codes} | {rows:,} | {lines:,} "
        f"| {processed:,} | {'exact' if ok else 'MISMATCH'} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--runners", type=int, default=2)
    parser.add_argument("--staggers", default="0,0.1,0.5,1")
    parser.add_argument("--db", action="append")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "lines.csv"
        csv.write_text("id,v\n" + "".join(f"{i},v{i}\n" for i in range(1, args.lines + 1)))
        print("| database | runners | stagger | exit codes | rows | lines | job processed | |")
        print("|---|---|---|---|---|---|---|---|")
        for db in args.db or DEFAULT_DBS:
            url = f"sqlite:///{Path(tmp) / 'runners.db'}" if db == "sqlite" else db
            for stagger in (float(s) for s in args.staggers.split(",")):
                print(one(url, csv, args.runners, stagger, args.lines), flush=True)


if __name__ == "__main__":
    main()
