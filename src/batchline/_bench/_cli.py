"""What both workloads of ``batchline bench`` share at the command line: refusing an option
the chosen workload does not use, a database's refusal as one line, and printing the report.

Why here: ``bench`` is one command with two workloads (the invoice strategies, and
``--load``); each has its own module for running, and both end the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import click
import sqlalchemy as sa
from click.core import ParameterSource
from rich.console import Console

from .._database import redact_url
from ._report import write_json

__all__ = ["LOAD_ONLY", "SHARED", "database_refusal", "refuse_options", "show"]

#: Options that mean something only with --load.
LOAD_ONLY = ("file", "bad")
#: Options the load bench shares with the invoice bench; any other is refused with --load.
SHARED = {"dbs", "lines", "repeats", "json_path", "quiet", "load", *LOAD_ONLY}


def refuse_options(ctx: click.Context, load: bool) -> None:
    """A usage error for an option given that the chosen workload does not use."""

    def given(name: str) -> bool:
        return ctx.get_parameter_source(name) not in (None, ParameterSource.DEFAULT)

    for param in ctx.command.params:
        name = param.name or ""
        wrong = (load and name not in SHARED) or (not load and name in LOAD_ONLY)
        if wrong and given(name):
            flag = "/".join([*param.opts, *param.secondary_opts]) or name
            raise click.UsageError(
                f"{flag} does not apply to --load" if load else f"{flag} needs --load"
            )


def database_refusal(exc: sa.exc.SQLAlchemyError, dbs: Iterable[str]) -> click.ClickException:
    """e.g. no right to create the bench's tables: one clear line, no traceback, no password."""
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    where = ", ".join(redact_url(db) for db in dbs) or "sqlite"
    return click.ClickException(f"{where}: {reason}")


def show(
    report: dict[str, Any],
    render: Callable[[dict[str, Any], Console], None],
    width: int,
    json_path: str | None,
) -> None:
    """Print ``report`` (``width`` columns off a terminal), write its JSON, exit 1 if not ok.

    Leaves the other files a workload writes (Markdown, a plot) to the caller, before this.
    """
    out = Console()
    render(report, out if out.is_terminal else Console(width=width))
    if json_path:
        write_json(report, json_path)
    if not report["ok"]:
        raise SystemExit(1)
