"""Memory stays flat with input size: peak RSS of ``batchline load`` at two CSV sizes.

Writes CSVs of invoice lines (100,000 and 2,000,000 records by default), then runs
``batchline load FILE --db sqlite:///... --table lines`` on each in a fresh subprocess and reads
its peak resident set size from ``/usr/bin/time -v`` (or, without it, from
``getrusage(RUSAGE_CHILDREN)`` in a wrapper process). Streaming means the two peaks should
be about the same; the ratio is printed.

    python bench/memory_flat.py                 # 100k vs 2M into a temporary SQLite file
    python bench/memory_flat.py --sizes 10000,200000 --db postgresql://postgres@127.0.0.1/test
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from batchline._invoices import make_catalog, make_lines

FIELDS = ["invoice_id", "line_no", "sku", "description", "quantity", "unit_price"]
_WRAPPER = (
    "import resource, subprocess, sys; rc = subprocess.call(sys.argv[1:]); "
    "print('MAXRSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(rc)"
)


_CLI = "import sys; from batchline.cli import main; sys.argv[0] = 'batchline'; main()"


def write_csv(path: Path, n: int) -> None:
    catalog = make_catalog(3000)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        writer.writeheader()
        writer.writerows(make_lines(catalog, n))


def peak_rss_kb(argv: list[str]) -> tuple[int, float]:
    """(peak RSS in KiB, wall seconds) of running ``argv`` in a fresh process."""
    start = time.perf_counter()
    if shutil.which("/usr/bin/time"):
        proc = subprocess.run(["/usr/bin/time", "-v", *argv], capture_output=True, text=True)
        found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    else:
        proc = subprocess.run(
            [sys.executable, "-c", _WRAPPER, *argv], capture_output=True, text=True
        )
        found = re.search(r"MAXRSS_KB (\d+)", proc.stdout)
    seconds = time.perf_counter() - start
    if proc.returncode not in (0, 3) or found is None:
        raise SystemExit(f"{argv[:3]}... failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return int(found.group(1)), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,2000000", help="record counts, comma-separated")
    parser.add_argument("--db", help="database URL (default: a fresh SQLite file per size)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="batchline-memory-"))
    script = Path(sys.executable).parent / "batchline"
    batchline = [str(script)] if script.exists() else [sys.executable, "-c", _CLI]
    results = []
    try:
        for n in sizes:
            path = tmp / f"lines_{n}.csv"
            write_csv(path, n)
            db = args.db or f"sqlite:///{tmp / f'memory_{n}.db'}"
            table = f"bench_memory_{n}"
            argv = [*batchline, "load", str(path), "--db", db, "--table", table, "--quiet"]
            argv += ["--job", f"memory-flat-{n}-{os.getpid()}"]
            kb, seconds = peak_rss_kb(argv)
            row = {
                "records": n,
                "csv_mib": round(path.stat().st_size / 2**20, 1),
                "peak_rss_mib": round(kb / 1024, 1),
                "seconds": round(seconds, 1),
                "records_per_second": round(n / seconds),
            }
            results.append(row)
            print(json.dumps(row), flush=True)
            path.unlink()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    first, last = results[0], results[-1]
    ratio = last["peak_rss_mib"] / first["peak_rss_mib"]
    print(
        f"peak RSS {first['peak_rss_mib']} MiB at {first['records']:,} records, "
        f"{last['peak_rss_mib']} MiB at {last['records']:,}: x{ratio:.2f} for "
        f"x{last['records'] / first['records']:.0f} the input"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
