"""``batchline bench``: strategies side by side on one workload, one database, one run.

Modules: ``_workload`` (the prefixed tables and the lines), ``_strategies`` (the named
strategies: sequential, the seed's batch, pandas, SQLAlchemy, hand-written, batchline, the
floor, from ``_sqlalchemy_strategies``, ``_driver_strategies`` and ``_batchline_strategies``),
``_harness`` (timing, checking, repeats), ``_proxy`` (the loopback latency proxy, with
``_proxy_threads`` and ``_echo``), ``_report`` (table, JSON, plot). ``bench --load`` is
``_lineitem`` (the generated TPC-H lineitem CSV), ``_load_spaces`` (a scratch space per
database and the loaders as processes), ``_load_bench`` (rounds, timing, rows read back,
targets), ``_process`` (a loader's seconds and peak RSS), ``_load_report`` and
``_load_command``; ``_cli`` is what both share at the command line. The CLI registers
:data:`bench_command` as ``batchline bench``; :func:`run_bench` and :func:`run_load_bench`
are the same from Python.
"""

from __future__ import annotations

import dataclasses
import shlex
import sys
from pathlib import Path

import click
import sqlalchemy as sa
from rich.console import Console

from .._database import redact_url
from .._errors import ConfigError
from ._cli import database_refusal, refuse_options, show
from ._harness import BenchOptions, run_bench, verify_state
from ._load_bench import LoadBenchOptions, run_load_bench
from ._load_command import run_load_command
from ._report import render, to_markdown, write_plot
from ._strategies import STRATEGIES

__all__ = [
    "BenchOptions",
    "LoadBenchOptions",
    "bench_command",
    "run_bench",
    "run_load_bench",
    "verify_state",
]

_NAMES = ", ".join(s.name for s in STRATEGIES)


def _floats(value: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in value.split(",") if x.strip())
    except ValueError:
        raise click.BadParameter(f"not a list of numbers: {value!r}") from None


@click.command("bench")
@click.option(
    "--db",
    "dbs",
    metavar="URL",
    multiple=True,
    help="Database URL (default: a temporary SQLite file); repeatable with --load, which "
    "runs on each in turn.",
)
@click.option(
    "--lines",
    type=click.IntRange(min=1),
    help="Invoice lines (default 20,000); with --load, lineitem rows (default 600,572).",
)
@click.option(
    "--load",
    is_flag=True,
    help="Time `batchline load` of a TPC-H lineitem CSV against each database's native "
    "loader (psql \\copy, sqlite3 .import, LOAD DATA LOCAL) and pandas to_sql, against "
    "issue 13's targets, instead of the invoice strategies.",
)
@click.option(
    "--file",
    type=click.Path(exists=True, dir_okay=False),
    help="With --load: a lineitem CSV (with its header line) instead of a generated one.",
)
@click.option(
    "--bad",
    metavar="PERCENT",
    type=click.FloatRange(min=0, max=100, max_open=True),
    default=0.0,
    help="With --load: also load a copy with PERCENT% of the rows bad (l_quantity not a "
    "number) and give its cost against the clean load.",
)
@click.option(
    "--latency-ms",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Delay added each way by a loopback proxy (network databases only; 0: no proxy).",
)
@click.option(
    "--latencies",
    metavar="X,Y,...",
    help="Several latencies in one run (for --plot); default with --plot: 0,0.5,1.",
)
@click.option(
    "--repeats",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Timed runs of each strategy, interleaved (with --load: rounds); the median counts.",
)
@click.option("--strategies", metavar="A,B,...", help=f"Which to run (default all: {_NAMES}).")
@click.option(
    "--sample",
    type=click.IntRange(min=1),
    default=2_000,
    show_default=True,
    help="Lines for the slow per-line strategies: sequential runs on N, seed-batch on 2N.",
)
@click.option(
    "--chunk-size",
    type=click.IntRange(min=1),
    default=500,
    show_default=True,
    help="Records per batch of the seed batch, pandas and SQLAlchemy strategies (batchline "
    "runs with its defaults: chunks sized by time).",
)
@click.option(
    "--tuned-chunk-size",
    type=click.IntRange(min=1),
    default=5_000,
    show_default=True,
    help="Records per transaction of batchline-tuned and the hand-written loader.",
)
@click.option("--memory/--no-memory", default=True, help="Measure peak memory (an extra pass).")
@click.option("--keep-tables", is_flag=True, help="Leave the bench_* tables in the database.")
@click.option("--json", "json_path", metavar="FILE", help="Write the full report as JSON.")
@click.option("--markdown", "md_path", metavar="FILE", help="Write the tables as Markdown.")
@click.option("--plot", "plot_path", metavar="FILE.png", help="Plot records/s against latency.")
@click.option("--quiet", "-q", is_flag=True, help="No progress lines; only the table.")
def bench_command(
    dbs: tuple[str, ...],
    lines: int | None,
    load: bool,
    file: str | None,
    bad: float,
    latency_ms: float,
    latencies: str | None,
    repeats: int,
    strategies: str | None,
    sample: int,
    chunk_size: int,
    tuned_chunk_size: int,
    memory: bool,
    keep_tables: bool,
    json_path: str | None,
    md_path: str | None,
    plot_path: str | None,
    quiet: bool,
) -> None:
    """Compare loading strategies on the invoice workload, side by side, in one run.

    Every strategy loads the same lines and must leave the same database state (checked after
    each run). Prints records/s (median of the repeats), the ratio to sequential and to the
    floor, and peak memory.

    With --load: a TPC-H lineitem CSV (generated, seeded, or --file) loaded by each
    database's native loader, pandas and `batchline load`, each a fresh process, interleaved
    rounds, rows read back; prints seconds, peak RSS and the ratios against the targets.
    """
    refuse_options(click.get_current_context(), load)
    command = shlex.join(["batchline", "bench", *_args()])
    if load:
        run_load_command(dbs, lines, file, bad, repeats, json_path, quiet, command)
        return
    if len(dbs) > 1:
        raise click.UsageError("one --db (several only with --load)")
    db = dbs[0] if dbs else None
    if latencies:
        lat = _floats(latencies)
    elif plot_path and latency_ms == 0:
        lat = (0.0, 0.5, 1.0)
    else:
        lat = (latency_ms,)
    names = tuple(n.strip() for n in strategies.split(",") if n.strip()) if strategies else None
    try:
        options = BenchOptions(
            db=db,
            lines=lines or BenchOptions.lines,
            latencies=lat,
            repeats=repeats,
            sample=sample,
            chunk_size=chunk_size,
            tuned_chunk_size=tuned_chunk_size,
            memory=memory,
            keep_tables=keep_tables,
        )
        if names:
            options = dataclasses.replace(options, strategies=names)
    except (ConfigError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None
    err = Console(stderr=True)
    try:
        report = run_bench(options, None if quiet else lambda msg: err.print(msg, highlight=False))
    except sa.exc.SQLAlchemyError as exc:
        raise database_refusal(exc, dbs) from None
    report["command"] = command
    if md_path:
        Path(md_path).write_text(to_markdown(report))
    if plot_path:
        write_plot(report, plot_path)
    show(report, render, 130, json_path)


def _args() -> list[str]:
    """The command line as typed, or, when called in-process (tests), as parsed; the
    passwords of database URLs masked."""
    if sys.argv[1:2] == ["bench"]:
        return [_masked(arg) for arg in sys.argv[2:]]
    ctx = click.get_current_context()
    args = []
    for param in ctx.command.params:
        value = ctx.params.get(param.name or "")
        if value == param.get_default(ctx) or value is None or not param.opts:
            continue
        flag = param.opts[0]
        if isinstance(param, click.Option) and param.is_flag:
            args.append(flag if value else (param.secondary_opts or [flag])[0])
        else:
            for one in value if isinstance(value, tuple) else (value,):
                args += [flag, _masked(str(one))]
    return args


def _masked(arg: str) -> str:
    """``arg``, or ``--db=URL``'s URL, with its password masked."""
    if "://" not in arg:
        return arg
    flag, equals, url = arg.partition("=") if arg.startswith("-") else ("", "", arg)
    return flag + equals + redact_url(url)
