"""PostgreSQL: the insert path (``unnest`` INSERT in the pipeline, or COPY) and the chunk
preparation on the mapping thread, each on and off, interleaved in one run.

Why this exists: the two choices trade round trips against Python work. COPY costs about
three round trips per chunk but psycopg formats its rows in C; the ``unnest`` INSERT rides in
the pipeline but psycopg dumps its array parameters in Python. Preparing a chunk ahead (its
lookup keys read on a second connection, its rows built) moves work off the flush thread.
Which wins depends on the chunk size and the round trip, so ``PostgresDialect.copy_from_rows``
is set from this script's figures. Variants are interleaved (A B C D, A B C D, ...) so the
machine's drift hits them alike; compare medians, not single runs.

    python bench/insert_paths.py --db postgresql://postgres@127.0.0.1/test --latency-ms 0.5
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import batchline._dialects._postgres as pg_dialect
import batchline._prepare as prepare
from batchline._bench._batchline_strategies import load_with_batchline
from batchline._bench._harness import bench_setup


def _not_prepared(self: prepare.Preparer, items: Any) -> prepare.Prepared:
    return prepare.Prepared([it for it in items if it.failure is None], {}, {}, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="postgresql://postgres@127.0.0.1/test")
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--latency-ms", type=float, default=0.5)
    parser.add_argument("--chunk-sizes", default="500,5000")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    chunk_sizes = [int(c) for c in args.chunk_sizes.split(",")]
    prepared: Callable[..., Any] = prepare.Preparer.prepare
    variants: dict[str, tuple[Callable[..., Any], int]] = {
        "prepared, unnest INSERT": (prepared, 10**9),
        "prepared, COPY": (prepared, 0),
        "not prepared, unnest INSERT": (_not_prepared, 10**9),
        "not prepared, COPY": (_not_prepared, 0),
    }
    saved = (prepare.Preparer.prepare, pg_dialect.PostgresDialect.copy_from_rows)
    with ExitStack() as stack:
        admin, engine, work = bench_setup(
            stack, args.db, args.latency_ms, "bench_paths_", args.lines
        )
        tables = work.tables
        stack.callback(setattr, prepare.Preparer, "prepare", saved[0])
        stack.callback(setattr, pg_dialect.PostgresDialect, "copy_from_rows", saved[1])
        results: dict[tuple[str, int], list[float]] = {}
        for _ in range(args.repeats):
            for name, (prep, copy_from) in variants.items():
                prepare.Preparer.prepare = prep  # type: ignore[method-assign]
                pg_dialect.PostgresDialect.copy_from_rows = copy_from
                for chunk in chunk_sizes:
                    tables.reset(admin)
                    start = time.perf_counter()
                    load_with_batchline(engine, work, chunk)
                    rate = len(work.lines) / (time.perf_counter() - start)
                    results.setdefault((name, chunk), []).append(rate)
    print(f"{args.lines:,} lines, +{args.latency_ms} ms each way, median of {args.repeats}")
    print(f"{'variant':30}" + "".join(f"{f'chunk {c:,}':>14}" for c in chunk_sizes))
    for name in variants:
        medians = [statistics.median(results[(name, c)]) for c in chunk_sizes]
        print(f"{name:30}" + "".join(f"{m:>14,.0f}" for m in medians))


if __name__ == "__main__":
    main()
