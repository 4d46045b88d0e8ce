"""``batchline jobs`` and ``batchline dlq list|show|export|replay|purge``.

Jobs and dead letters live in the target database beside the data; these commands read and
manage them through :class:`~batchline.DeadLetters`. ``dlq replay`` rebuilds the load from the
spec its job recorded, so the records go through the same conversion and write as before.
"""

from __future__ import annotations

import json
import sys

import click

from .._load import idempotency_for_spec, map_for_spec, pipeline_for_spec, refresh_schema
from ._common import (
    db_option,
    dead_letters,
    emit_result,
    fail,
    handled,
    json_option,
    stored_database_url,
    wait_option,
)
from ._render import (
    job_to_dict,
    render_dead_letter,
    render_dead_letters,
    render_jobs,
    stdout_console,
)

__all__ = ["dlq", "jobs"]

# -- jobs -----------------------------------------------------------------------------------


@click.command()
@db_option
@json_option
@handled
def jobs(db: str | None, as_json: bool) -> None:
    """List jobs: status, position (records handled), processed, failed, duplicates; for a
    broker consumer also its broker's end position and lag, as it last recorded them."""
    with dead_letters(db) as letters:
        found = letters.jobs()
    if as_json:
        click.echo(json.dumps([job_to_dict(j) for j in found], default=str))
    else:
        render_jobs(stdout_console(), found)


# -- dead letters -----------------------------------------------------------------------------


@click.group()
def dlq() -> None:
    """Dead letters: the records that did not land, with their line and reason."""


@dlq.command("list")
@db_option
@click.option("--job", metavar="NAME", help="Only this job's dead letters.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@json_option
@handled
def dlq_list(db: str | None, job: str | None, limit: int, as_json: bool) -> None:
    """List dead letters, oldest first."""
    with dead_letters(db) as letters:
        found = letters.list(job, limit=limit)
    if as_json:
        click.echo(json.dumps([d.to_dict() for d in found], default=str))
    else:
        render_dead_letters(stdout_console(), found)


@dlq.command("show")
@click.argument("dead_letter_id", metavar="ID", type=int)
@db_option
@json_option
@handled
def dlq_show(dead_letter_id: int, db: str | None, as_json: bool) -> None:
    """Show one dead letter in full, with its record."""
    with dead_letters(db) as letters:
        found = letters.get(dead_letter_id)
    if found is None:
        fail(f"no dead letter with id {dead_letter_id}")
    if as_json:
        click.echo(json.dumps(found.to_dict(), default=str))
    else:
        render_dead_letter(stdout_console(), found)


@dlq.command("export")
@db_option
@click.option("--job", metavar="NAME", help="Only this job's dead letters.")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, allow_dash=True),
    default="-",
    help="File to write (default: standard output).",
)
@handled
def dlq_export(db: str | None, job: str | None, output: str) -> None:
    """Export dead letters as JSON Lines (one object per line, with the record)."""
    with dead_letters(db) as letters:
        if output == "-":
            count = letters.export(sys.stdout, job)
        else:
            with open(output, "w", encoding="utf-8") as fh:
                count = letters.export(fh, job)
    click.echo(f"exported {count} dead letters", err=True)


@dlq.command("replay")
@db_option
@click.option("--job", metavar="NAME", required=True, help="The load job whose letters to replay.")
@click.option("--quiet", "-q", is_flag=True, help="No summary.")
@json_option
@wait_option
@handled
def dlq_replay(db: str | None, job: str, quiet: bool, as_json: bool, wait: float) -> None:
    """Re-run a job's dead letters through the same load (after fixing the cause).

    The pipeline is rebuilt from the load spec the job recorded (table, mode, key, column
    types). Records that now land leave the dead letters in the same transaction; the others
    stay, with the new reason. Unreadable rows (stage read) hold raw text and stay, and so do
    letters that do not hold their whole record (--dead-letter-payload keys/none, --redact).
    """
    letters_url = stored_database_url(db)
    with dead_letters(db) as letters:
        state = letters.job(job)
        if state is None:
            fail(f"no job named {job!r} (see batchline jobs)")
        try:
            spec = json.loads(state.spec or "null")
        except ValueError:
            spec = None
        # a consumer's spec (batchline consume) describes its table and conversion alike
        if not isinstance(spec, dict) or spec.get("command") not in ("load", "consume"):
            fail(
                f"job {job!r} has no stored load spec (it was not started by batchline load "
                "or consume); replay it from Python with DeadLetters.replay"
            )
        refresh_schema(letters.engine, spec)
        pipeline = pipeline_for_spec(letters.engine, spec)
        result = letters.replay(
            pipeline,
            map_for_spec(spec),
            job=job,
            idempotency_key=idempotency_for_spec(spec),
            wait=wait,
        )
        unreadable = sum(1 for d in letters.iter(job) if d.stage == "read")
    if result.message and quiet:
        click.echo(f"batchline: {result.message}", err=True)  # else the summary shows it
    if unreadable:
        click.echo(
            f"batchline: {unreadable} unreadable rows (stage read) were not replayed: they hold "
            "the raw text; fix those lines in the file and load them again",
            err=True,
        )
    # The letters that failed again stay under the job they came from, not the replay's.
    emit_result(
        result, as_json=as_json, quiet=quiet, title="replay", url=letters_url, letters_job=job
    )


@dlq.command("purge")
@db_option
@click.option("--job", metavar="NAME", help="Only this job's dead letters (default: all).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@handled
def dlq_purge(db: str | None, job: str | None, yes: bool) -> None:
    """Delete dead letters for good."""
    with dead_letters(db) as letters:
        what = f"the dead letters of job {job!r}" if job else "ALL dead letters"
        if not yes:
            click.confirm(f"Delete {what}?", abort=True, err=True)
        count = letters.purge(job)
    click.echo(f"deleted {count} dead letters", err=True)
