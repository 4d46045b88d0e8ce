"""``batchline bench --load``: the load bench's options turned into a run, and its output.

Why a flag on ``bench`` and not a ``bench load`` command: ``bench`` is one command whose
options are its invoice workload's; a group would need those options on the group (where a
``bench load --lines`` would not see them) or break ``batchline bench --lines N``. So
``--load`` switches the workload, the options both share (``--db``, ``--lines``,
``--repeats``, ``--json``, ``--quiet``) keep their meaning, and the invoice-only ones are
refused with it rather than ignored.
"""

from __future__ import annotations

import click
import sqlalchemy as sa
from rich.console import Console

from .._errors import ConfigError
from ._cli import database_refusal, show
from ._lineitem import SF_0_1_ROWS
from ._load_bench import LoadBenchOptions, run_load_bench
from ._load_report import render_load

__all__ = ["run_load_command"]


def run_load_command(
    dbs: tuple[str, ...],
    lines: int | None,
    file: str | None,
    bad: float,
    repeats: int,
    json_path: str | None,
    quiet: bool,
    command: str,
) -> None:
    """Run the load bench as ``batchline bench --load`` was asked to; exit 1 if a load failed."""
    if file and lines is not None:
        raise click.UsageError("--lines and --file: the rows are the file's")
    try:
        options = LoadBenchOptions(
            dbs=tuple(dbs) or (None,),
            rows=lines or SF_0_1_ROWS,
            file=file,
            rounds=repeats,
            bad=bad,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    err = Console(stderr=True)
    try:
        report = run_load_bench(
            options, None if quiet else lambda msg: err.print(msg, highlight=False, markup=False)
        )
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    except sa.exc.SQLAlchemyError as exc:
        raise database_refusal(exc, dbs) from None
    report["command"] = command
    show(report, render_load, 150, json_path)
