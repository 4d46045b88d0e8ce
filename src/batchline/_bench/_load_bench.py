"""``batchline bench --load``: ``batchline load`` of a lineitem CSV against each database's
native loader and pandas, side by side, interleaved, row counts read back, against issue
13's targets.

Why this shape: figures taken minutes apart on a shared machine are not comparable, so in
every round each database's loaders run one after the other on the same file (native,
pandas, ``batchline load``, the ``--bad`` copy), each into an emptied table, each as a fresh
process timed from its start to its exit, and the median of the rounds is reported. A load
counts only when the rows read back are the rows expected. Peak memory is the process's own
peak RSS (``_process``). Ratios are against :data:`TARGETS`; ``_load_report`` shows them.

batchline's own modules are compiled to bytecode before anything is timed
(:func:`compile_bytecode`), as ``pip install`` does for an installed package: from an
editable checkout, with ``PYTHONDONTWRITEBYTECODE`` set (as on the machines these figures
come from), every ``batchline`` process would otherwise compile its eighty-odd modules from
source again, about 0.4 s that no installed copy pays and that the native loaders, being
compiled programs, never do.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ._harness import machine_info
from ._lineitem import SF_0_1_ROWS, check_file, generate, spoil
from ._load_spaces import Loader, Space, open_space
from ._process import run_timed

__all__ = ["TARGETS", "LoadBenchOptions", "Target", "compile_bytecode", "run_load_bench"]

Progress = Callable[[str], None]


@dataclass(frozen=True)
class LoadBenchOptions:
    """What ``batchline bench --load`` measures; the defaults are issue 13's run."""

    dbs: tuple[str | None, ...] = (None,)  # None: a temporary SQLite file
    rows: int = SF_0_1_ROWS  # rows to generate (ignored with ``file``)
    file: str | None = None  # a lineitem CSV to load instead of a generated one
    rounds: int = 3
    bad: float = 0.0  # percent of rows spoiled in a second file; 0: none

    def __post_init__(self) -> None:
        if self.rows < 1 or self.rounds < 1:
            raise ValueError("rows and rounds must be at least 1")
        if not 0 <= self.bad < 100:
            raise ValueError("--bad is a percentage from 0 to 100")
        if not self.dbs:
            raise ValueError("at least one database")


@dataclass(frozen=True)
class Target:
    """One of issue 13's targets: ``seconds[over] / seconds[under]`` compared with a bound.

    Speed targets put the other loader over batchline (``0.5`` means batchline is at least
    half as fast); the bad-rows target puts the bad file's load over the clean one.
    """

    backend: str  # "postgresql", "sqlite", "mysql" or "*" (every database)
    measure: str
    over: str  # loader keys
    under: str
    at_least: float | None = None
    below: float | None = None

    @property
    def text(self) -> str:
        if self.at_least is not None:
            return f">= {self.at_least:g}x"
        return f"< {self.below:g}x" if self.below is not None else "—"

    def met(self, ratio: float | None) -> bool | None:
        if ratio is None or (self.at_least is None and self.below is None):
            return None
        if self.at_least is not None:
            return ratio >= self.at_least
        return ratio < (self.below or 0)


TARGETS = (
    Target("postgresql", "batchline load vs psql \\copy", "native", "batchline", at_least=0.5),
    Target("postgresql", "batchline load vs pandas to_sql", "pandas", "batchline"),
    Target("sqlite", "batchline load vs pandas to_sql", "pandas", "batchline", at_least=1.5),
    Target("sqlite", "batchline load vs sqlite3 .import", "native", "batchline", at_least=0.5),
    Target("mysql", "batchline load vs LOAD DATA LOCAL", "native", "batchline", at_least=0.5),
    Target("mysql", "batchline load vs pandas to_sql", "pandas", "batchline"),
    Target("*", "bad rows: cost vs a clean load", "batchline-bad", "batchline", below=2.0),
)


@dataclass
class _Timings:
    loader: Loader
    seconds: list[float] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    peak_rss: int | None = None
    error: str | None = None

    def summary(self) -> dict[str, Any]:
        s, lo = self.seconds, self.loader
        return {
            "key": lo.key,
            "name": lo.name,
            "command": lo.shown,
            "table": lo.table,
            "seconds": [round(x, 4) for x in s],
            "median_seconds": statistics.median(s) if s else None,
            "min_seconds": min(s, default=None),
            "max_seconds": max(s, default=None),
            "rows_expected": lo.expected_rows,
            "rows": self.rows[-1] if self.rows else None,
            "rows_per_round": self.rows,
            "verified": bool(s) and self.error is None,
            "peak_rss_bytes": self.peak_rss,
            "error": self.error,
            "skipped": lo.skipped,
        }


def _once(space: Space, t: _Timings, log: Path) -> None:
    """One timed load of ``t``'s loader into an emptied table, and its rows read back."""
    space.reset(t.loader)
    run = run_timed(t.loader.argv, {**os.environ, **t.loader.env}, t.loader.stdin, log)
    if run.code not in t.loader.ok_codes:
        lines = log.read_text(errors="replace").strip().splitlines()
        t.error = space.scrub(f"exit {run.code}: {lines[-1] if lines else 'no message'}")[:400]
        return
    rows = space.count(t.loader.table)
    t.rows.append(rows)
    if rows != t.loader.expected_rows:
        t.error = f"{rows:,} rows read back, {t.loader.expected_rows:,} expected"
        return
    t.seconds.append(run.seconds)
    t.peak_rss = max(t.peak_rss or 0, run.peak_rss or 0) or None


def _ratios(backend: str, rows: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for target in TARGETS:
        if target.backend not in ("*", backend):
            continue
        over, under = rows.get(target.over), rows.get(target.under)
        if over is None or under is None:
            continue  # --bad not asked for
        a, b = over["median_seconds"], under["median_seconds"]
        ratio = a / b if a and b else None
        # each round's own ratio: its loads ran minutes apart at most, so these show the noise
        rounds = [x / y for x, y in zip(over["seconds"], under["seconds"])]
        out.append(
            {
                "measure": target.measure,
                "over": target.over,
                "under": target.under,
                "ratio": ratio,
                "ratio_per_round": [round(x, 3) for x in rounds],
                "target": target.text,
                "met": target.met(ratio),
            }
        )
    return out


def _prepare_files(opts: LoadBenchOptions, work: Path, say: Progress) -> dict[str, Any]:
    csv = work / "lineitem.csv"
    if opts.file:
        rows = check_file(opts.file)
        csv.symlink_to(Path(opts.file).resolve())  # one safe name for the clients' commands
    else:
        rows = opts.rows
        say(f"generating {rows:,} lineitem rows in {csv}")
        generate(csv, rows)
    bad_rows = 0
    if opts.bad:
        bad_rows = spoil(csv, work / "lineitem_bad.csv", opts.bad)
    return {
        "generated": opts.file is None,
        "path": opts.file,
        "rows": rows,
        "bytes": csv.stat().st_size,
        "bad_percent": opts.bad,
        "bad_rows": bad_rows,
    }


def compile_bytecode() -> bool:
    """Write the bytecode of batchline's package (``compileall``, which writes it even under
    ``PYTHONDONTWRITEBYTECODE``); whether it succeeded. A read-only install keeps what it has."""
    package = str(Path(__file__).resolve().parents[1])
    done = subprocess.run(
        [sys.executable, "-m", "compileall", "-q", package],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    return done.returncode == 0


def run_load_bench(options: LoadBenchOptions, progress: Progress | None = None) -> dict[str, Any]:
    """Run the comparison and return its report (the ``--json`` document)."""
    say: Progress = progress or (lambda _msg: None)
    info_machine = machine_info()  # its date is the run's start
    info_machine["batchline"] = __version__
    info_machine["load_average_before"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    work = Path(tempfile.mkdtemp(prefix="batchline-bench-load-"))
    spaces: list[Space] = []
    plan: list[tuple[Space, list[_Timings]]] = []
    try:
        for db in options.dbs:  # first: a database that refuses stops the run before the file
            spaces.append(open_space(db, work))
        info = _prepare_files(options, work, say)
        info_machine["bytecode_compiled"] = compile_bytecode()
        csv, bad_csv = work / "lineitem.csv", work / "lineitem_bad.csv"
        rows, good = info["rows"], info["rows"] - info["bad_rows"]
        for space in spaces:
            loaders = space.loaders(csv, rows, bad_csv if options.bad else None, good, options.bad)
            plan.append((space, [_Timings(lo) for lo in loaders]))
            for lo in loaders:
                if lo.skipped:
                    say(f"{space.name}: {lo.name or lo.key} skipped: {lo.skipped}")
        size = info["bytes"] / 1e6
        say(f"{rows:,} rows, {size:.1f} MB, {options.rounds} round(s), in {work}")
        for r in range(options.rounds):
            for space, timings in plan:
                for t in timings:
                    if t.loader.skipped or t.error:
                        continue
                    _once(space, t, work / "stderr.txt")
                    done = t.error or f"{t.seconds[-1]:.2f} s, {t.rows[-1]:,} rows read back"
                    say(f"[{r + 1}/{options.rounds}] {space.name}, {t.loader.name}: {done}")
    finally:
        for space in spaces:
            space.teardown()
        shutil.rmtree(work, ignore_errors=True)
    databases: list[dict[str, Any]] = []
    for space, timings in plan:
        rows_of = [t.summary() for t in timings]
        by_key = {row["key"]: row for row in rows_of}
        databases.append(
            {
                "database": space.backend,
                "name": space.name,
                "server_version": space.server_version,
                "url": space.shown,
                "loaders": rows_of,
                "ratios": _ratios(space.backend, by_key),
            }
        )
    ok = all(row["verified"] or row["skipped"] for db in databases for row in db["loaders"])
    info_machine["load_average_after"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "batchline_bench_load": 1,
        "command": None,  # the CLI fills in the command line it ran
        "date": info_machine["date"],
        "machine": info_machine,
        "options": asdict(options) | {"dbs": [s.shown for s in spaces]},
        "file": info,
        "rounds": options.rounds,
        "databases": databases,
        "ok": ok,
    }
