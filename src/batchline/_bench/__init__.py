"""``batchline bench``: strategies side by side on one workload, one database, one run.

Modules: ``_workload`` (the prefixed tables and the lines), ``_strategies`` (the named
strategies: sequential, the seed's batch, pandas, SQLAlchemy, hand-written, batchline, the
floor, from ``_sqlalchemy_strategies``, ``_driver_strategies`` and ``_batchline_strategies``),
``_harness`` (timing, checking, repeats), ``_proxy`` (the loopback latency proxy, with
``_proxy_threads`` and ``_echo``), ``_report`` (table, JSON, plot). The CLI registers
:data:`bench_command` as ``batchline bench``; :func:`run_bench` is the same from Python.
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
from ._harness import BenchOptions, run_bench, verify_state
from ._report import render, to_markdown, write_json, write_plot
from ._strategies import STRATEGIES

__all__ = ["BenchOptions", "bench_command", "run_bench", "verify_state"]

_NAMES = ", ".join(s.name for s in STRATEGIES)


def _floats(value: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in value.split(",") if x.strip())
    except ValueError:
        raise click.BadParameter(f"not a list of numbers: {value!r}") from None


@click.command("bench")
@click.option("--db", metavar="URL", help="Database URL (default: a temporary SQLite file).")
@click.option("--lines", type=click.IntRange(min=1), default=20_000, show_default=True)
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
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True)
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
    db: str | None,
    lines: int,
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
    """
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
            lines=lines,
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
        # e.g. no schema to create the bench tables in: one clear line, no traceback
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise click.ClickException(f"{redact_url(db or 'sqlite')}: {reason}") from None
    report["command"] = shlex.join(["batchline", "bench", *_args()])
    out = Console()
    render(report, out if out.is_terminal else Console(width=130))
    if json_path:
        write_json(report, json_path)
    if md_path:
        Path(md_path).write_text(to_markdown(report))
    if plot_path:
        write_plot(report, plot_path)
    if not report["ok"]:
        raise SystemExit(1)


def _args() -> list[str]:
    """The command line as typed, or, when called in-process (tests), as parsed."""
    if sys.argv[1:2] == ["bench"]:
        return sys.argv[2:]
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
            args += [flag, str(value)]
    return args
