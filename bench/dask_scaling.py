"""Records/s of a partitioned load on Dask with 1, 2 and 4 workers, against PostgreSQL.

Why: issue 6 asks what adding Dask workers buys on this machine. The workload is a file load
with a hot aggregate: ``--files`` CSV files of ``--rows`` lines each; every line is inserted
into ``lines`` (COPY) and added to ``totals`` (one ``Increment`` keyed by SKU over ``--skus``
SKUs, so every partition's chunks update the same few rows). Each worker count gets a fresh
schema and a fresh ``LocalCluster`` (one thread per worker process); the cluster's start-up
is timed apart from the load, and the workers are warmed up (imports, first connection)
before the clock starts. An in-process run (``Pipeline.run`` over the files one after the
other, no Dask) is the baseline. Every run is checked: the row count, the quantity sum and
every SKU's total must equal what Python computed from the files.

The CPU columns say where the time went: the share of the machine's CPUs used during the load
by PostgreSQL's server processes and by the load itself (this script and its Dask workers).

Usage::

    .venv/bin/python bench/dask_scaling.py [--url postgresql+psycopg://postgres@127.0.0.1/test]
        [--files 8] [--rows 50000] [--workers 1,2,4] [--chunk-size 500] [--json]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psutil
import sqlalchemy as sa

import batchline as bl
from batchline._database import redact_url
from batchline.dask import run_partitions

__all__ = ["main"]

DEFAULT_URL = os.environ.get(
    "BATCHLINE_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def map_line(record: dict[str, Any], out: bl.Out) -> None:
    """One line: insert it, add its quantity to its SKU's total."""
    qty = int(record["qty"])
    out.insert("lines", {"id": int(record["id"]), "sku": record["sku"], "qty": qty})
    out.increment("totals", {"sku": record["sku"], "qty": qty, "n": 1})


def write_files(folder: str, files: int, rows: int, skus: int) -> tuple[list[str], dict[str, Any]]:
    """The input files, and what the tables must hold after loading them."""
    paths: list[str] = []
    totals: dict[str, list[int]] = {}
    qty_sum = 0
    for f in range(files):
        path = os.path.join(folder, f"part-{f:03d}.csv")
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["id", "sku", "qty"])
            for i in range(rows):
                rid = f * rows + i
                sku = f"SKU-{(rid * 7919) % skus:05d}"
                qty = rid % 17 + 1
                w.writerow([rid, sku, qty])
                t = totals.setdefault(sku, [0, 0])
                t[0] += qty
                t[1] += 1
                qty_sum += qty
        paths.append(path)
    expected = {
        "count": files * rows,
        "sum": qty_sum,
        "totals": {sku: (q, n) for sku, (q, n) in totals.items()},
    }
    return paths, expected


@contextmanager
def scratch_schema(url: str) -> Iterator[str]:
    """A fresh schema with the two tables; the URL that points at it; dropped afterwards."""
    admin = sa.create_engine(url, poolclass=sa.pool.NullPool)
    schema = f"bt_dask_{secrets.token_hex(3)}"
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        conn.exec_driver_sql(f'CREATE TABLE "{schema}".lines (id bigint, sku text, qty bigint)')
        conn.exec_driver_sql(
            f'CREATE TABLE "{schema}".totals (sku text PRIMARY KEY, qty bigint, n bigint)'
        )
    scoped = sa.make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield scoped.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


def check(url: str, expected: dict[str, Any]) -> None:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            count, distinct, total = conn.exec_driver_sql(
                "SELECT count(*), count(DISTINCT id), sum(qty) FROM lines"
            ).one()
            totals = {
                sku: (int(q), int(n))
                for sku, q, n in conn.exec_driver_sql("SELECT sku, qty, n FROM totals")
            }
    finally:
        engine.dispose()
    if (count, distinct, int(total)) != (expected["count"], expected["count"], expected["sum"]):
        raise SystemExit(f"WRONG: lines hold {count} rows ({distinct} distinct), sum {total}")
    if totals != expected["totals"]:
        raise SystemExit("WRONG: totals differ from the files")


class CpuMeter:
    """CPU seconds used by PostgreSQL's server processes and by this load's own processes.

    A thread samples every process's CPU times, because a server backend exits (and its CPU
    time vanishes) when its connection closes. Other work on the machine is in neither share.
    """

    def __init__(self, interval: float = 0.2) -> None:
        self._first: dict[int, float] = {}
        self._last: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._t0 = time.perf_counter()
        self._sample(initial=True)
        self._thread = threading.Thread(target=self._loop, args=(interval,), daemon=True)
        self._thread.start()

    def _sample(self, initial: bool = False) -> None:
        ours = {os.getpid()} | {c.pid for c in psutil.Process().children(recursive=True)}
        for proc in psutil.process_iter(["pid", "name", "cpu_times"]):
            times = proc.info["cpu_times"]
            if times is None:
                continue
            pid = proc.info["pid"]
            if pid in ours:
                kind = "ours"
            elif (proc.info["name"] or "").startswith("postgres"):
                kind = "pg"
            else:
                continue
            used = times.user + times.system
            # Processes there at the start count from then; later ones from their birth.
            self._first.setdefault(pid, used if initial else 0.0)
            self._last[pid] = (kind, used)

    def _loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self._sample()

    def shares(self) -> tuple[float, float]:
        """(PostgreSQL, this load) as percent of all CPUs over the measured time."""
        self._stop.set()
        self._thread.join()
        self._sample()
        elapsed = (time.perf_counter() - self._t0) * (psutil.cpu_count() or 1)
        used = {"pg": 0.0, "ours": 0.0}
        for pid, (kind, last) in self._last.items():
            used[kind] += last - self._first.get(pid, 0.0)
        return 100 * used["pg"] / elapsed, 100 * used["ours"] / elapsed


def run_in_process(url: str, paths: list[str], chunk_size: int) -> dict[str, Any]:
    pipeline = bl.Pipeline(
        url,
        writes=[bl.Insert("lines"), bl.Increment("totals", key="sku", columns=["qty", "n"])],
        chunk_size=chunk_size,
    )
    meter = CpuMeter()
    started = time.perf_counter()
    with pipeline:
        for i, path in enumerate(paths):
            result = pipeline.run(bl.read(path), map_line, job=f"inproc/{i:05d}")
            if result.status != "success":
                raise SystemExit(f"in-process run failed: {result.to_dict()}")
    seconds = time.perf_counter() - started
    pg_cpu, other_cpu = meter.shares()
    return {"workers": 0, "seconds": seconds, "pg_cpu": pg_cpu, "other_cpu": other_cpu}


def run_on_dask(url: str, paths: list[str], workers: int, chunk_size: int) -> dict[str, Any]:
    from distributed import Client, LocalCluster

    started = time.perf_counter()
    with (
        LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        client.wait_for_workers(workers)
        client.run(_warm_up, url)
        startup = time.perf_counter() - started
        pipeline = bl.Pipeline(
            url,
            writes=[bl.Insert("lines"), bl.Increment("totals", key="sku", columns=["qty", "n"])],
            chunk_size=chunk_size,
        )
        meter = CpuMeter()
        result = run_partitions(pipeline, paths, map_line, job="dask", client=client)
        pg_cpu, other_cpu = meter.shares()
    if result.status != "success":
        raise SystemExit(f"dask run failed: {result.to_dict()}")
    return {
        "workers": workers,
        "seconds": result.processing_time_seconds,
        "startup_seconds": startup,
        "pg_cpu": pg_cpu,
        "other_cpu": other_cpu,
        "retries": result.to_dict()["retries"],
    }


def _warm_up(url: str) -> None:
    """Import and connect once on each worker, so the timed load measures loading."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1")
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL, help="PostgreSQL URL (a schema is made)")
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--rows", type=int, default=50_000, help="lines per file")
    parser.add_argument("--skus", type=int, default=100, help="distinct hot keys")
    parser.add_argument("--workers", default="1,2,4", help="worker counts to try")
    parser.add_argument("--chunk-size", type=int, default=500)
    parser.add_argument("--no-baseline", action="store_true", help="skip the in-process run")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",") if w.strip()]

    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as folder:
        paths, expected = write_files(folder, args.files, args.rows, args.skus)
        plan: list[int] = ([] if args.no_baseline else [0]) + counts
        for workers in plan:
            with scratch_schema(args.url) as url:
                if workers == 0:
                    run = run_in_process(url, paths, args.chunk_size)
                else:
                    run = run_on_dask(url, paths, workers, args.chunk_size)
                check(url, expected)
            run["records_per_second"] = expected["count"] / run["seconds"]
            runs.append(run)

    report = {
        "database": redact_url(args.url),
        "records": args.files * args.rows,
        "files": args.files,
        "skus": args.skus,
        "chunk_size": args.chunk_size,
        "cpus": psutil.cpu_count(),
        "runs": runs,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"{report['records']:,} records in {args.files} files, {args.skus} hot keys, "
        f"chunk {args.chunk_size}, {report['cpus']} CPUs, {report['database']}"
    )
    base = next((r for r in runs if r["workers"] == 1), runs[0])
    print(
        f"{'workers':>12} {'seconds':>8} {'records/s':>10} {'vs 1':>6} {'pg cpu':>7} "
        f"{'load cpu':>9} {'startup s':>9}"
    )
    for r in runs:
        label = "in-process" if r["workers"] == 0 else str(r["workers"])
        startup = f"{r['startup_seconds']:.1f}" if "startup_seconds" in r else "-"
        print(
            f"{label:>12} {r['seconds']:8.2f} {r['records_per_second']:10,.0f} "
            f"{r['records_per_second'] / base['records_per_second']:6.2f} "
            f"{r['pg_cpu']:6.0f}% {r['other_cpu']:8.0f}% {startup:>9}"
        )


if __name__ == "__main__":
    main()
