"""``batchline demo``: the invoice example end to end, beside one-at-a-time processing.

Why a module of its own: the demo is the command a newcomer runs first; it parses its few
options, calls ``batchline._demo.run_demo`` and renders the report, nothing more.
"""

from __future__ import annotations

import json

import click

from ._common import (
    DEMO_DB,
    EXIT_CODES,
    check_database,
    database_url,
    db_hint,
    handled,
    json_option,
)
from ._render import stdout_console

__all__ = ["demo"]


@click.command()
@click.option(
    "--db",
    metavar="URL",
    help=f"Database URL (default: {DEMO_DB} here, recreated each run; `batchline jobs` and "
    "`dlq` read it while there is no batchline.db here). The demo drops and recreates the "
    "tables catalog, transactions and inventory there.",
)
@click.option(
    "--lines", type=click.IntRange(min=1), default=30_000, show_default=True, help="Invoice lines."
)
@click.option(
    "--sequential-sample",
    type=click.IntRange(min=0),
    default=2_000,
    show_default=True,
    help="Lines timed the one-at-a-time way, for the comparison (0 skips it).",
)
@click.option("--quiet", "-q", is_flag=True, help="Only the final summary.")
@json_option
@handled
def demo(db: str | None, lines: int, sequential_sample: int, quiet: bool, as_json: bool) -> None:
    """Run the invoice example end to end and compare it with one-at-a-time processing.

    Generates invoice lines over a catalog of a few thousand products (with misspelt
    descriptions and a few deliberately bad lines), fuzzy-matches each description to the
    catalog, creates unknown products through a batched Lookup, inserts the transactions and
    adds up inventory, dead-lettering the bad lines. Exit code 3: the bad lines are dead
    letters, as intended.
    """
    from ._demo_run import run_demo

    url = database_url(db or DEMO_DB)
    report = run_demo(
        url,
        lines=lines,
        sequential_sample=sequential_sample,
        echo=None if (quiet or as_json) else stdout_console(),
        check=check_database,
    )
    if as_json:
        click.echo(json.dumps(report.to_dict(), default=str))
    else:
        report.render(stdout_console(), db_hint=db_hint(url))
    raise click.exceptions.Exit(EXIT_CODES.get(report.result.status, 1))
