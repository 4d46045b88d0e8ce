"""What bad records cost: 1% bad lines against none, with bisect and with sequential fallback.

The same invoice workload as ``batchline bench`` (the public API, default settings), once
clean and once with every 100th line bad (cycling through the five kinds in
``batchline._invoices.BAD_KINDS``: a map error, two CHECK violations, an unknown SKU, a
duplicate key). Each run is checked: every good line committed, every bad one dead-lettered.
Target (issue 7): 1% bad costs less than 2x a clean run with bisect. The sequential fallback
commits record by record, so it runs on the first ``--sample`` lines only (its records/s come
from that sample).

    python bench/isolation_cost.py                      # temporary SQLite file
    python bench/isolation_cost.py --db postgresql://postgres@127.0.0.1/test --latency-ms 0.5
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import sqlalchemy as sa

import batchline as bl
from batchline._bench._proxy import LatencyProxy, proxied_url
from batchline._bench._workload import BenchTables
from batchline._database import make_engine
from batchline._invoices import make_catalog, make_lines


def load(
    engine: sa.Engine, tables: BenchTables, lines: list[dict[str, Any]], fallback: str
) -> bl.Result:
    catalog = bl.Lookup(tables.catalog.name, key="sku", returns="id")
    tx, inv = tables.transactions.name, tables.inventory.name
    pipeline = bl.Pipeline(
        engine,
        writes=[bl.Insert(tx), bl.Increment(inv, key="item_id", columns=["quantity"])],
        lookups=[catalog],
        fallback=fallback,
        state_prefix=tables.state_prefix,
    )

    def map_line(record: dict[str, Any], out: bl.Out) -> None:
        item_id = catalog.ref(sku=record["sku"])
        out.insert(tx, {
            "invoice_id": record["invoice_id"], "line_no": record["line_no"], "item_id": item_id,
            "quantity": record["quantity"], "unit_cost": record["unit_price"],
        })  # fmt: skip
        out.increment(inv, {"item_id": item_id, "quantity": record["quantity"]})

    return pipeline.run(lines, map_line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", help="database URL (default: a temporary SQLite file)")
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--bad-every", type=int, default=100, help="every Nth line is bad (1%%)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--sample", type=int, default=2_000, help="lines for the sequential case")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    logging.getLogger("batchline").setLevel(logging.ERROR)  # one line per dead letter otherwise

    with ExitStack() as stack:
        tmp = tempfile.mkdtemp(prefix="batchline-isolation-")
        stack.callback(shutil.rmtree, tmp, True)
        url = args.db or f"sqlite:///{Path(tmp) / 'isolation.db'}"
        admin, _ = make_engine(url)
        stack.callback(admin.dispose)
        target = url
        if args.latency_ms > 0 and admin.url.get_backend_name() != "sqlite":
            u = admin.url
            proxy = stack.enter_context(
                LatencyProxy(u.host or "127.0.0.1", u.port or 5432, args.latency_ms)
            )
            target = proxied_url(u, proxy.port)
        engine, _ = make_engine(target)
        stack.callback(engine.dispose)
        tables = BenchTables.build("bench_iso_")
        catalog = make_catalog(3000)
        tables.create(admin, catalog)
        stack.callback(tables.drop, admin)

        clean = list(make_lines(catalog, args.lines))
        dirty = list(make_lines(catalog, args.lines, bad_every=args.bad_every))
        n_bad = args.lines // args.bad_every
        # The sequential fallback commits record by record: a sample keeps it bearable.
        seq = dirty[: args.sample]
        cases = [("clean", clean, "bisect", 0), ("1% bad, bisect", dirty, "bisect", n_bad),
                 ("1% bad, sequential", seq, "sequential", len(seq) // args.bad_every)]  # fmt: skip
        seconds: dict[str, list[float]] = {name: [] for name, *_ in cases}
        extra: dict[str, dict[str, int]] = {}
        for _ in range(args.repeats):
            for name, lines, fallback, bad in cases:
                tables.reset(admin)
                start = time.perf_counter()
                result = load(engine, tables, lines, fallback)
                seconds[name].append(time.perf_counter() - start)
                if result.items_failed != bad or result.items_processed != len(lines) - bad:
                    raise SystemExit(f"{name}: unexpected result {result.to_dict()}")
                extra[name] = {"isolation_flushes": result.isolation_flushes,
                               "statements": result.statements}  # fmt: skip
        base = statistics.median(seconds["clean"]) / len(clean)  # seconds per record
        rows = []
        for name, lines, fallback, bad in cases:
            median = statistics.median(seconds[name])
            rows.append({
                "case": name, "records": len(lines), "bad": bad, "fallback": fallback,
                "median_seconds": round(median, 3),
                "records_per_second": round(len(lines) / median),
                "cost_vs_clean": round(median / len(lines) / base, 2), **extra[name],
            })  # fmt: skip
        print(f"{sa.make_url(url).render_as_string(hide_password=True)}, "
              f"latency {args.latency_ms} ms each way, median of {args.repeats}")  # fmt: skip
        head = f"{'case':<22}{'records/s':>12}{'x clean':>10}"
        print(f"{head}{'isolation flushes':>20}{'statements':>12}")
        for r in rows:
            print(f"{r['case']:<22}{r['records_per_second']:>12,}{r['cost_vs_clean']:>10.2f}"
                  f"{r['isolation_flushes']:>20,}{r['statements']:>12,}")  # fmt: skip
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
