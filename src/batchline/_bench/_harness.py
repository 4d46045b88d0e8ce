"""Run the strategies on one database: set up, time, check the state, repeat, summarise.

Why the care: figures that are not from the same run, the same lines and a verified end state
are not comparable. So every strategy runs on one workload, repeats are interleaved (A B C,
A B C...) so drift hits all alike, each timed run starts from empty tables and ends with a
check of the whole state against what Python computed, and the median is reported.
Peak memory is measured in a separate, untimed pass under ``tracemalloc``, which would
otherwise slow the timed runs.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import platform
import shutil
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from .._database import make_engine, redact_url
from ._proxy import LatencyProxy, proxied_url
from ._strategies import STRATEGIES, Strategy, strategy_named
from ._workload import BenchTables, Workload, expected_rows, make_workload

__all__ = [
    "MEMORY_SAMPLE",
    "RATIO_BASES",
    "BenchOptions",
    "Progress",
    "VerificationError",
    "machine",
    "machine_info",
    "round_trip_ms",
    "run_bench",
    "verify_state",
]

Progress = Callable[[str], None]
MEMORY_SAMPLE = 500  # lines for the memory pass of the per-line (sampled) strategies
_DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306}


@dataclass(frozen=True)
class BenchOptions:
    """What ``batchline bench`` measures; the defaults are the documented run."""

    db: str | None = None  # None: a temporary SQLite file
    lines: int = 20_000
    latencies: tuple[float, ...] = (0.0,)  # ms added each way; 0: no proxy
    repeats: int = 3
    strategies: tuple[str, ...] = tuple(s.name for s in STRATEGIES)
    sample: int = 2_000  # lines for the sampled (per-line) strategies
    chunk_size: int = 500
    tuned_chunk_size: int = 5_000
    products: int = 3_000
    seed: int = 11
    memory: bool = True
    prefix: str = "bench_"
    keep_tables: bool = False

    def __post_init__(self) -> None:
        if self.lines < 1 or self.repeats < 1 or self.sample < 1:
            raise ValueError("lines, repeats and sample must be at least 1")
        if any(x < 0 for x in self.latencies) or not self.latencies:
            raise ValueError("latencies must be one or more values >= 0")
        for name in self.strategies:
            strategy_named(name)


class VerificationError(AssertionError):
    """A strategy left the database in a state other than the expected one."""


def verify_state(engine: sa.Engine, work: Workload) -> dict[str, int]:
    """Compare transactions and inventory with the state computed from the lines.

    Returns the row counts checked; raises :class:`VerificationError` on any difference.
    """
    tables = work.tables
    tx, inv = tables.transactions, tables.inventory
    # type_coerce: read unit_cost as the driver gives it (SQLite: a float), normalise below
    query = sa.select(
        tx.c.invoice_id, tx.c.line_no, tx.c.item_id, tx.c.quantity,
        sa.type_coerce(tx.c.unit_cost, sa.String),
    )  # fmt: skip
    with engine.connect() as conn:
        got_tx = sorted(
            (int(a), int(b), int(c), int(d), Decimal(str(e)))
            for a, b, c, d, e in conn.execute(query)
        )
        got_inv = {
            int(k): int(v) for k, v in conn.execute(sa.select(inv.c.item_id, inv.c.quantity))
        }
    want_tx = expected_rows(work)
    if got_tx != want_tx:
        diff = next((f"{g} != {w}" for g, w in zip(got_tx, want_tx) if g != w), "")
        raise VerificationError(
            f"{tx.name}: {len(got_tx)} rows, expected {len(want_tx)}; first difference: {diff}"
        )
    if got_inv != work.totals:
        wrong = sorted(
            k for k in got_inv.keys() | work.totals.keys() if got_inv.get(k) != work.totals.get(k)
        )
        raise VerificationError(
            f"{inv.name}: {len(wrong)} items differ, e.g. item {wrong[0]}: "
            f"{got_inv.get(wrong[0])} != {work.totals.get(wrong[0])}"
        )
    return {"transactions": len(got_tx), "inventory_items": len(got_inv)}


@dataclass
class _Measure:
    strategy: Strategy
    work: Workload
    seconds: list[float] = field(default_factory=list)
    checks: int = 0
    error: str | None = None
    skipped: str | None = None  # why it did not run (a missing optional dependency)
    peak_memory_bytes: int | None = None

    def summary(self) -> dict[str, Any]:
        n = len(self.work.lines)
        rates = [n / s for s in self.seconds]
        median = statistics.median(self.seconds) if self.seconds else None
        return {
            "name": self.strategy.name,
            "description": self.strategy.description,
            "records": n,
            "sampled": self.strategy.sampled,
            "seconds": [round(s, 6) for s in self.seconds],
            "median_seconds": median,
            "records_per_second": n / median if median else None,
            "records_per_second_min": min(rates) if rates else None,
            "records_per_second_max": max(rates) if rates else None,
            "peak_memory_bytes": self.peak_memory_bytes,
            "verified": self.error is None and self.checks == len(self.seconds) > 0,
            "verifications": self.checks,
            "error": self.error,
            "skipped": self.skipped,
        }


def _timed(engine: sa.Engine, admin: sa.Engine, m: _Measure) -> None:
    m.work.tables.reset(admin)
    gc.collect()
    start = time.perf_counter()
    m.strategy.run(engine, m.work)
    elapsed = time.perf_counter() - start
    verify_state(admin, m.work)
    m.checks += 1
    m.seconds.append(elapsed)


def _memory(engine: sa.Engine, admin: sa.Engine, m: _Measure) -> None:
    # A per-line strategy holds nothing between lines: a short run shows its peak.
    work = m.work.head(MEMORY_SAMPLE) if m.strategy.sampled else m.work
    work.tables.reset(admin)
    gc.collect()
    tracemalloc.start()
    try:
        m.strategy.run(engine, work)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    verify_state(admin, work)
    m.peak_memory_bytes = peak


def _brief(exc: BaseException) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first[:300]}"


def _attempt(
    step: Callable[[sa.Engine, sa.Engine, _Measure], None],
    engine: sa.Engine,
    admin: sa.Engine,
    m: _Measure,
    label: str,
) -> bool:
    """Run one step of ``m``; on failure record why, clean up, and return False."""
    try:
        step(engine, admin, m)
        return True
    except Exception as exc:
        m.error = label + _brief(exc)
    # Outside the except block: the exception and its traceback (which may hold the
    # strategy's open connection) are gone, so collecting them releases that connection.
    _recover(engine)
    return False


def _recover(engine: sa.Engine) -> None:
    """After a strategy failed: close its connections, so a lock it held cannot stall the rest."""
    gc.collect()  # the traceback may have kept an open cursor (on SQLite: a read lock) alive
    engine.dispose()


#: The strategies every row is compared with: key in the report -> strategy name.
RATIO_BASES = {
    "vs_sequential": "sequential",
    "vs_hand_written": "hand-written",
    "vs_floor": "floor",
}


def _ratios(rows: list[dict[str, Any]]) -> None:
    rate = {r["name"]: r["records_per_second"] for r in rows}
    for r in rows:
        for key, base in RATIO_BASES.items():
            b = rate.get(base)
            own = r["records_per_second"]
            r[key] = own / b if own and b else None


@contextmanager
def _through_proxy(url: sa.URL, latency_ms: float) -> Iterator[tuple[str, bool]]:
    """The URL strategies connect to: through a LatencyProxy when latency is asked for."""
    if latency_ms <= 0 or url.get_backend_name() == "sqlite":
        yield url.render_as_string(hide_password=False), False
        return
    if not url.host:
        raise ValueError("--latency-ms needs a database reached by host and port")
    port = url.port or _DEFAULT_PORTS.get(url.get_backend_name(), 0)
    with LatencyProxy(url.host, port, latency_ms) as proxy:
        yield proxied_url(url, proxy.port), True


def bench_setup(
    stack: contextlib.ExitStack[Any],
    db: str | None,
    latency_ms: float,
    prefix: str,
    lines: int,
    *,
    chunk_size: int = 500,
) -> tuple[sa.Engine, sa.Engine, Workload]:
    """For the ``bench/`` scripts: an engine for setting up and checking (direct), one to
    measure (through a LatencyProxy when latency is asked for; not for SQLite), and the
    invoice workload over ``prefix``-named tables, created. A temporary SQLite file when
    ``db`` is None. ``stack`` undoes all of it."""
    if db is None:
        tmp = tempfile.mkdtemp(prefix="batchline-bench-")
        stack.callback(shutil.rmtree, tmp, True)
        db = f"sqlite:///{Path(tmp) / 'bench.db'}"
    admin, _ = make_engine(db)
    stack.callback(admin.dispose)
    target, _ = stack.enter_context(_through_proxy(admin.url, latency_ms))
    engine, _ = make_engine(target)
    stack.callback(engine.dispose)
    tables = BenchTables.build(prefix)
    work, catalog = make_workload(tables, lines, chunk_size=chunk_size)
    tables.create(admin, catalog)
    stack.callback(tables.drop, admin)
    return admin, engine, work


def round_trip_ms(engine: sa.Engine, n: int = 50) -> float:
    """Median time of ``SELECT 1`` on one connection (driver level), after a warm-up."""
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        samples = []
        for i in range(n + 5):
            start = time.perf_counter()
            cur.execute("SELECT 1")
            cur.fetchall()
            if i >= 5:
                samples.append((time.perf_counter() - start) * 1000.0)
        cur.close()
        raw.rollback()
    finally:
        raw.close()
    return statistics.median(samples)


def machine_info() -> dict[str, Any]:
    """Where the figures come from: CPUs, Python, the date (the database aside)."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu_count": os.cpu_count(),
        "cpu": cpu,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "sqlalchemy": sa.__version__,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def machine(admin: sa.Engine) -> dict[str, Any]:
    """Where the figures come from: CPUs, Python, the database server, the date."""
    with admin.connect() as conn:
        version = conn.dialect.server_version_info or ()
    return {
        **machine_info(),
        "database": admin.dialect.name,
        "driver": admin.dialect.driver,
        "server_version": ".".join(str(v) for v in version),
    }


def _run_latency(
    opts: BenchOptions,
    url: sa.URL,
    admin: sa.Engine,
    work: Workload,
    latency: float,
    say: Progress,
) -> dict[str, Any]:
    strategies = [strategy_named(n) for n in opts.strategies]
    with _through_proxy(url, latency) as (target, proxied):
        engine, _ = make_engine(target)
        try:
            rtt = round_trip_ms(engine) if url.get_backend_name() != "sqlite" else None
            if rtt is not None:
                say(f"latency {latency:g} ms each way: SELECT 1 round trip {rtt:.3f} ms")
            measures = [
                _Measure(s, work.head(opts.sample * s.sample) if s.sampled else work)
                for s in strategies
            ]
            for m in measures:
                _ = m.work.mapped, m.work.totals  # the floor's input is ready before timing
                for module in m.strategy.imports:
                    try:
                        importlib.import_module(module)
                    except ImportError:
                        m.skipped = f"{module} is not installed (pip install 'batchline[bench]')"
                        say(f"  {m.strategy.name}: skipped, {m.skipped}")
            for rep in range(opts.repeats):
                for m in measures:
                    if m.skipped:
                        continue
                    if m.error is None and _attempt(_timed, engine, admin, m, ""):
                        n = len(m.work.lines)
                        say(
                            f"  [{rep + 1}/{opts.repeats}] {m.strategy.name}: {n:,} lines in "
                            f"{m.seconds[-1]:.3f} s ({n / m.seconds[-1]:,.0f} records/s), verified"
                        )
                    elif m.error is not None and m.checks == rep:
                        say(f"  {m.strategy.name}: FAILED {m.error}")
            if opts.memory:
                for m in measures:
                    if m.error is None and not m.skipped:
                        _attempt(_memory, engine, admin, m, "(memory pass) ")
                say("  peak memory measured (tracemalloc, untimed pass)")
        finally:
            engine.dispose()
    rows = [m.summary() for m in measures]
    _ratios(rows)
    return {"latency_ms": latency, "proxied": proxied, "rtt_ms": rtt, "strategies": rows}


def run_bench(options: BenchOptions, progress: Progress | None = None) -> dict[str, Any]:
    """Run the bench and return its report (the ``--json`` document).

    Creates ``<prefix>catalog``, ``<prefix>transactions``, ``<prefix>inventory`` (and
    batchline's state tables under ``<prefix>batchline_``) in the database, and drops them
    at the end unless ``keep_tables``.
    """
    say: Progress = progress or (lambda _msg: None)
    tmpdir = None
    db = options.db
    if db is None:
        tmpdir = tempfile.mkdtemp(prefix="batchline-bench-")
        db = f"sqlite:///{Path(tmpdir) / 'bench.db'}"
    admin, _ = make_engine(db)
    url = admin.url
    notes: list[str] = []
    latencies = options.latencies
    if url.get_backend_name() == "sqlite" and any(x > 0 for x in latencies):
        notes.append("SQLite is embedded: there is no network to delay, so latency is ignored.")
        latencies = (0.0,)
    for name in options.strategies:
        n = options.sample * strategy_named(name).sample
        if n and n < options.lines:
            notes.append(
                f"{name} ran on the first {n:,} lines only (it is slow per line); "
                "its records/s are from that sample."
            )
    tables = BenchTables.build(options.prefix)
    try:
        say(f"setting up {redact_url(url)}: {options.products:,} products, {options.lines:,} lines")
        work, catalog = make_workload(
            tables,
            options.lines,
            n_products=options.products,
            seed=options.seed,
            chunk_size=options.chunk_size,
            tuned_chunk_size=options.tuned_chunk_size,
        )
        tables.create(admin, catalog)
        info = machine(admin)
        runs = [_run_latency(options, url, admin, work, x, say) for x in latencies]
        if not options.keep_tables:
            tables.drop(admin)
    finally:
        admin.dispose()
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)
    ok = all(r["verified"] or r["skipped"] for run in runs for r in run["strategies"])
    return {
        "batchline_bench": 1,
        "command": None,  # the CLI fills in the command line it ran
        "date": info["date"],
        "machine": info,
        "db": redact_url(url) if options.db else "temporary SQLite file",
        "options": {**asdict(options), "db": redact_url(url) if options.db else None},
        "notes": notes,
        "runs": runs,
        "ok": ok,
    }
