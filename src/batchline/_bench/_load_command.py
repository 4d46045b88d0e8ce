"""``batchline bench --load``: the option checks, the run and the output of the load bench.

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
from click.core import ParameterSource
from rich.console import Console

from .._database import redact_url
from .._errors import ConfigError
from ._lineitem import SF_0_1_ROWS
from ._load_bench import LoadBenchOptions, run_load_bench
from ._load_report import render_load
from ._report import write_json

__all__ = ["LOAD_ONLY", "refuse_options", "run_load_command"]

#: Options that mean something only with --load.
LOAD_ONLY = ("file", "bad")
#: Options the load bench shares with the invoice bench; any other is refused with --load.
_SHARED = {"dbs", "lines", "repeats", "json_path", "quiet", "load", *LOAD_ONLY}


def refuse_options(ctx: click.Context, load: bool) -> None:
    """A usage error for an option given that the chosen workload does not use."""

    def given(name: str) -> bool:
        return ctx.get_parameter_source(name) not in (None, ParameterSource.DEFAULT)

    for param in ctx.command.params:
        name = param.name or ""
        wrong = (load and name not in _SHARED) or (not load and name in LOAD_ONLY)
        if wrong and given(name):
            flag = param.opts[0] if param.opts else name
            raise click.UsageError(
                f"{flag} does not apply to --load" if load else f"{flag} needs --load"
            )


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
        # e.g. no right to create the bench's schema: one clear line, no traceback
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        where = ", ".join(redact_url(db) for db in dbs) or "sqlite"
        raise click.ClickException(f"{where}: {reason}") from None
    report["command"] = command
    out = Console()
    render_load(report, out if out.is_terminal else Console(width=150))
    if json_path:
        write_json(report, json_path)
    if not report["ok"]:
        raise SystemExit(1)
