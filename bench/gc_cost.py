"""What the cyclic garbage collector costs a load, with ``Pipeline(tune_gc=...)`` on and off,
interleaved in one run; SQLAlchemy Core under both settings too, for a fair comparison.

Why this exists: a chunk's objects live until it commits, get promoted to the oldest
generation, and trigger full collections (see ``batchline._gc``). This script shows how much
of a run that was and what ``tune_gc`` (on by default) wins back. It also reports the time
spent inside collections (``gc.callbacks``), so the gain can be checked against its cause.

    python bench/gc_cost.py                                                   # SQLite
    python bench/gc_cost.py --db postgresql://postgres@127.0.0.1/test --latency-ms 0.5
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import statistics
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import replace
from typing import Any

import batchline._pipeline as pipeline_module
from batchline._bench._batchline_strategies import load_with_batchline
from batchline._bench._harness import bench_setup
from batchline._bench._strategies import sqlalchemy_core
from batchline._gc import fewer_collections


class GcClock:
    """Seconds spent inside collections, from ``gc.callbacks``."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.passes = 0
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._start
            self.passes += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default=None, help="database URL (default: temporary SQLite)")
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--chunk-sizes", default="500,5000")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    chunk_sizes = [int(c) for c in args.chunk_sizes.split(",")]
    with ExitStack() as stack:
        admin, engine, work = bench_setup(stack, args.db, args.latency_ms, "bench_gc_", args.lines)
        tables = work.tables
        stack.callback(setattr, pipeline_module, "fewer_collections", fewer_collections)

        def batchline(tuned: bool, chunk: int) -> None:
            pipeline_module.fewer_collections = (  # type: ignore[assignment]
                fewer_collections if tuned else contextlib.nullcontext
            )
            load_with_batchline(engine, work, chunk)

        def core(tuned: bool, chunk: int) -> None:
            with fewer_collections() if tuned else contextlib.nullcontext():
                sqlalchemy_core(engine, replace(work, chunk_size=chunk))

        runs: dict[str, Callable[[bool, int], None]] = {"batchline": batchline, "sqlalchemy": core}
        rates: dict[tuple[str, bool, int], list[float]] = {}
        gc_share: dict[tuple[str, bool, int], list[float]] = {}
        for _ in range(args.repeats):
            for name, run in runs.items():
                for tuned in (True, False):
                    for chunk in chunk_sizes:
                        tables.reset(admin)
                        clock = GcClock()
                        gc.callbacks.append(clock)
                        try:
                            start = time.perf_counter()
                            run(tuned, chunk)
                            wall = time.perf_counter() - start
                        finally:
                            gc.callbacks.remove(clock)
                        rates.setdefault((name, tuned, chunk), []).append(len(work.lines) / wall)
                        gc_share.setdefault((name, tuned, chunk), []).append(clock.seconds / wall)
    where = admin.url.get_backend_name()
    print(f"{where}, {args.lines:,} lines, +{args.latency_ms} ms each way,", end=" ")
    print(f"median of {args.repeats}")
    print(f"{'strategy':12} {'chunk':>6} {'gc':>8} {'records/s':>10} {'in gc':>6} {'tuned/not':>9}")
    for name in runs:
        for chunk in chunk_sizes:
            base = statistics.median(rates[(name, False, chunk)])
            for tuned in (True, False):
                rate = statistics.median(rates[(name, tuned, chunk)])
                share = statistics.median(gc_share[(name, tuned, chunk)])
                label = "tuned" if tuned else "default"
                print(
                    f"{name:12} {chunk:>6} {label:>8} {rate:>10,.0f} {share:>6.0%}"
                    f" {rate / base:>8.2f}x"
                )


if __name__ == "__main__":
    main()
