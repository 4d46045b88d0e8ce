"""Where a batchline run spends its time: timers around each flush step, and cProfile of both
threads (the mapping thread and the flush worker, which cProfile alone does not see).

For whoever optimises ``_flush.py``, ``_apply.py``, ``_aggregate.py`` or the dialects: run it
before and after.
It wraps private functions at run time, so it follows their names, not a public API.

    python bench/profile_flush.py                                 # SQLite, 20,000 lines
    python bench/profile_flush.py --db postgresql://postgres@127.0.0.1/test --latency-ms 0.5
    python bench/profile_flush.py --cprofile --chunk-size 5000
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import functools
import pstats
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import batchline._aggregate
import batchline._apply
import batchline._database
import batchline._flush
import batchline._lookups
import batchline._state
from batchline._bench._batchline_strategies import load_with_batchline
from batchline._bench._harness import bench_setup

TIMED = [
    (batchline._flush.Flusher, "flush", "flush (total)"),
    (batchline._lookups.LookupResolver, "resolve", "lookups: collect refs + fetch"),
    (batchline._lookups.LookupResolver, "_fetch", "lookups: fetch (SQL)"),
    (batchline._apply.Applier, "_apply_write", "writes: aggregate + SQL"),
    (batchline._apply, "aggregate", "writes: aggregate()"),
    (batchline._flush.Flusher, "_write_dead_letters", "dead letters"),
    (batchline._state.StateStore, "advance", "checkpoint (advance)"),
    (batchline._database.Session, "begin", "begin"),
    (batchline._database.Session, "commit", "commit"),
]


def instrument(
    stack: ExitStack, seconds: dict[str, float], calls: collections.Counter[str]
) -> None:
    for owner, name, label in TIMED:
        original = getattr(owner, name)

        def timed(*a: Any, _f: Callable[..., Any] = original, _l: str = label, **k: Any) -> Any:
            start = time.perf_counter()
            try:
                return _f(*a, **k)
            finally:
                seconds[_l] += time.perf_counter() - start
                calls[_l] += 1

        setattr(owner, name, functools.wraps(original)(timed))
        stack.callback(setattr, owner, name, original)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", help="database URL (default: a temporary SQLite file)")
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--chunk-size", type=int, default=500)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--cprofile", action="store_true", help="also print cProfile tops")
    args = parser.parse_args()
    with ExitStack() as stack:
        admin, engine, work = bench_setup(
            stack,
            args.db,
            args.latency_ms,
            "bench_profile_",
            args.lines,
            chunk_size=args.chunk_size,
        )
        tables = work.tables
        load_with_batchline(engine, work, args.chunk_size)  # warm up: imports, caches, connections
        tables.reset(admin)

        seconds: dict[str, float] = collections.defaultdict(float)
        calls: collections.Counter[str] = collections.Counter()
        main_prof, flush_prof = cProfile.Profile(), cProfile.Profile()
        with ExitStack() as patches:
            instrument(patches, seconds, calls)
            if args.cprofile:
                flush = batchline._flush.Flusher.flush

                def profiled(self: Any, *a: Any, **k: Any) -> Any:
                    flush_prof.enable()
                    try:
                        return flush(self, *a, **k)
                    finally:
                        flush_prof.disable()

                batchline._flush.Flusher.flush = profiled  # type: ignore[method-assign]
                patches.callback(setattr, batchline._flush.Flusher, "flush", flush)
                main_prof.enable()
            start, cpu_start = time.perf_counter(), time.process_time()
            load_with_batchline(engine, work, args.chunk_size)
            wall = time.perf_counter() - start
            cpu = time.process_time() - cpu_start
            main_prof.disable()
        print(f"{args.lines:,} lines in {wall:.3f} s: {args.lines / wall:,.0f} records/s")
        # below 100%: this process waits (for the server, or a proxied round trip)
        print(f"  this process's CPU: {cpu:.3f} s, {cpu / wall:.0%} of the wall time")
        for label, secs in sorted(seconds.items(), key=lambda kv: -kv[1]):
            n = calls[label]
            print(f"  {label:32} {secs:8.3f} s {n:6} calls {secs / n * 1000:9.2f} ms/call")
        if args.cprofile:
            for title, prof in (("mapping thread", main_prof), ("flush thread", flush_prof)):
                print(f"\n=== {title} (cProfile, by own time)")
                pstats.Stats(prof).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
