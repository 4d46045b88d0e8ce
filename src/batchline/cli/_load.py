"""``batchline load``: one file into a table, or many files on Dask, with the progress shown.

Why a module of its own: ``load`` has the most options of any command (the file's format,
the table's types, the mode, the job, the dead letters' privacy, Dask); here they are parsed
into a load spec and handed to ``batchline._load`` (or ``batchline.dask.load_files``), and
the outcome is rendered.
"""

from __future__ import annotations

import glob
import importlib
import os
from typing import Any, NoReturn

import click

from .._load import idempotency_for_spec, make_spec, open_source, prepare_load
from .._out import Out
from .._sources import FORMATS, FileSource
from ._common import (
    check_database,
    database_url,
    db_option,
    emit_result,
    fail,
    handled,
    json_option,
    wait_option,
)
from ._render import LoadProgress, stderr_console

__all__ = ["load"]


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _max_failures(value: str | None) -> int | float | None:
    if value is None:
        return None
    try:
        if value.endswith("%"):
            return float(value[:-1]) / 100
        if any(c in value for c in ".eE"):
            number = float(value)
            if not 0 <= number < 1:
                raise ValueError
            return number
        count = int(value)
        if count < 0:
            raise ValueError
        return count
    except ValueError:
        raise click.BadParameter(
            f"{value!r}: expected a count (e.g. 100) or a fraction (e.g. 0.05 or 5%)",
            param_hint="--max-failures",
        ) from None


@click.command()
@click.argument("file", metavar="FILE")
@db_option
@click.option("--table", "-t", required=True, help="Table to load into (created if missing).")
@click.option(
    "--format",
    "fmt",
    metavar="FORMAT",
    help=f"One of {', '.join(FORMATS)} (default: from the file extension; csv for stdin).",
)
@click.option(
    "--schema",
    metavar="SCHEMA",
    help="Create/load the table in this PostgreSQL schema or MySQL database (it must "
    "exist); --table schema.table says the same.",
)
@click.option(
    "--type",
    "types",
    metavar="COL=TYPE",
    multiple=True,
    help="The column's type when the table is created: integer, float, decimal(p,s), "
    "boolean, date, timestamp, timestamptz, text, binary, json (repeatable).",
)
@click.option(
    "--empty-text",
    type=click.Choice(["empty", "null"]),
    default="empty",
    show_default=True,
    help="What an empty CSV field of a text column stores ('' or NULL); in other columns "
    "an empty field is always NULL.",
)
@click.option(
    "--delimiter",
    metavar="CHAR",
    help="CSV field delimiter (default: , for csv, tab for tsv, | for tbl; \\t for tab).",
)
@click.option("--quote", metavar="CHAR", help='CSV quote character (default "; "" for none).')
@click.option("--sniff", is_flag=True, help="Guess the CSV delimiter and quote from the file.")
@click.option(
    "--encoding", default="utf-8", show_default=True, help="Text encoding of CSV/JSON files."
)
@click.option(
    "--names",
    metavar="COL[,COL]",
    help="Column names of a CSV/tbl file that has no header line (its first line is data).",
)
@click.option("--upsert", is_flag=True, help="Insert or update rows by --key.")
@click.option("--increment", is_flag=True, help="Add --columns to the row with --key.")
@click.option("--key", "-k", metavar="COL[,COL]", help="Key column(s) for --upsert/--increment.")
@click.option("--columns", metavar="COL[,COL]", help="Columns --increment adds up.")
@click.option(
    "--chunk-size",
    type=click.IntRange(min=1),
    help="Records per transaction (default: sized so a transaction takes about 0.2 s, "
    "starting at 500).",
)
@click.option("--job", metavar="NAME", help="Job name: re-running it resumes where it stopped.")
@click.option(
    "--restart",
    is_flag=True,
    help="Start --job over from its first record, even if it finished or was started with "
    "another file or options. Its dead letters are dropped; rows it loaded stay (a plain "
    "insert without --idempotency-key adds them again).",
)
@click.option(
    "--idempotency-key",
    metavar="COL[,COL]",
    help="Skip records whose key columns were loaded before (even by other jobs).",
)
@click.option(
    "--max-failures",
    metavar="N|FRACTION",
    help="Stop (exit 1) once more records than this failed: a count or a fraction like 0.05.",
)
@click.option(
    "--fallback",
    type=click.Choice(["bisect", "sequential", "none"]),
    default="bisect",
    show_default=True,
    help="How a failing chunk's bad records are found.",
)
@click.option(
    "--dead-letter-payload",
    type=click.Choice(["full", "keys", "none"]),
    default="full",
    show_default=True,
    help="What a dead letter keeps of its record: all of it (replay needs it), only the "
    "columns that identify it (--dead-letter-keys, else --key, else --idempotency-key), "
    "or nothing but line and reason.",
)
@click.option(
    "--dead-letter-keys",
    metavar="COL[,COL]",
    help="The columns a --dead-letter-payload keys letter keeps.",
)
@click.option(
    "--redact",
    metavar="COL",
    multiple=True,
    help="Store [redacted] for this column's value in dead letters and their messages "
    "(repeatable).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no summary.")
@json_option
@click.option("--dask", "scheduler", metavar="SCHEDULER", help="Run on a Dask scheduler address.")
@click.option("--workers", type=click.IntRange(min=1), help="Run on N local Dask workers.")
@wait_option
@handled
def load(
    file: str,
    db: str | None,
    table: str,
    fmt: str | None,
    schema: str | None,
    types: tuple[str, ...],
    empty_text: str,
    delimiter: str | None,
    quote: str | None,
    sniff: bool,
    encoding: str,
    names: str | None,
    upsert: bool,
    increment: bool,
    key: str | None,
    columns: str | None,
    chunk_size: int | None,
    job: str | None,
    restart: bool,
    idempotency_key: str | None,
    max_failures: str | None,
    fallback: str,
    dead_letter_payload: str,
    dead_letter_keys: str | None,
    redact: tuple[str, ...],
    quiet: bool,
    as_json: bool,
    scheduler: str | None,
    workers: int | None,
    wait: float,
) -> None:
    """Load FILE (CSV, TSV, JSON Lines, JSON array or Parquet; - for stdin) into a table.

    The table is created from the data's types when it is missing. A bad record never stops
    the load: unreadable rows (malformed CSV, wrong field count, bad UTF-8, invalid JSON),
    values that do not convert to the column's type, and rows the database refuses (too
    long, constraint) go to the dead letters with their line number and reason, and the good
    rows commit. See them with `batchline dlq list`; fix the cause and `batchline dlq replay`.
    A dead letter keeps the whole record unless --dead-letter-payload or --redact limit it
    (then replay cannot load it again).

    With --job, running the same command again resumes the job, or does nothing once it
    finished; a command that loads differently (another file, table, mode or key) is refused
    until given another --job or --restart.
    """
    if upsert and increment:
        raise click.UsageError("--upsert and --increment exclude each other")
    if restart and job is None:
        raise click.UsageError("--restart needs --job (a load without --job always starts anew)")
    mode = "upsert" if upsert else "increment" if increment else "insert"
    limit = _max_failures(max_failures)
    overrides: dict[str, str] = {}
    for item in types:
        name, sep, kind = item.partition("=")
        if not sep or not name.strip() or not kind.strip():
            raise click.UsageError(f"--type takes COL=TYPE, got {item!r}")
        overrides[name.strip()] = kind.strip()
    spec = make_spec(
        file=file,
        format=fmt,
        table=f"{schema}.{table}" if schema else table,
        mode=mode,
        key=_split(key),
        columns=_split(columns),
        chunk_size=chunk_size,
        idempotency_key=_split(idempotency_key),
        fallback=fallback,
        dead_letter_payload=dead_letter_payload,
        redact=[c for value in redact for c in _split(value)],
        dead_letter_keys=_split(dead_letter_keys),
        types=overrides,
        empty_text=empty_text,
    )
    url = database_url(db)
    if scheduler is not None or workers is not None:
        read_options = {
            "--delimiter": delimiter,
            "--quote": quote,
            "--sniff": sniff or None,
            "--names": names,
            "--encoding": None if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else 1,
        }
        given = [name for name, value in read_options.items() if value is not None]
        if given:  # the partitions read each file by its format alone, for now
            raise click.UsageError(f"{', '.join(given)} cannot be used with --dask/--workers yet")
        check_database(url)
        _load_distributed(
            file, url, spec, scheduler, workers, job=job, restart=restart, max_failures=limit,
            as_json=as_json, quiet=quiet,
        )  # fmt: skip
    if glob.has_magic(file) and not os.path.exists(file):
        fail(f"{file} is a pattern; loading several files needs --dask or --workers")
    source = open_source(
        file,
        format=fmt,
        encoding=encoding,
        delimiter=delimiter,
        quote=quote,
        sniff=sniff,
        names=_split(names) or None,
    )
    assert isinstance(source, FileSource)
    check_database(url)
    prepared = prepare_load(source, url, spec, job=job, restart=restart, max_failures=limit)
    pipeline, map_record, tracked = prepared.pipeline, prepared.map, prepared.source
    console = stderr_console()
    show_progress = console.is_terminal and not quiet and not as_json
    with pipeline:
        if not show_progress:
            result = pipeline.run(
                tracked,
                map_record,
                job=job,
                idempotency_key=idempotency_for_spec(spec),
                restart=restart,
                spec=spec,
                wait=wait,
            )
        else:
            progress = LoadProgress(console, source)
            tracked.on_item = progress.on_item

            def counted(record: dict[str, Any], out: Out) -> None:
                try:
                    map_record(record, out)
                except Exception:
                    progress.on_map_failure()
                    raise

            # the load's map, counted: a bulk chunk still skips it, or converts its columns
            # with Arrow compute instead (the hooks ``arrow_writer`` looks for)
            counted.arrow_unchanged = map_record.arrow_unchanged  # type: ignore[attr-defined]
            counted.arrow_convert = map_record.arrow_convert  # type: ignore[attr-defined]

            with progress.shown():
                result = pipeline.run(
                    tracked,
                    counted,
                    job=job,
                    idempotency_key=idempotency_for_spec(spec),
                    restart=restart,
                    spec=spec,
                    on_chunk=progress.on_chunk,
                    wait=wait,
                )
    if not quiet:
        for line in map_record.outlier_lines():
            click.echo(line, err=True)
    emit_result(result, as_json=as_json, quiet=quiet, title="load", url=url)


def _load_distributed(
    pattern: str,
    url: str,
    spec: dict[str, Any],
    scheduler: str | None,
    workers: int | None,
    *,
    job: str | None,
    restart: bool,
    max_failures: int | float | None,
    as_json: bool,
    quiet: bool,
) -> NoReturn:
    """Hand the load to ``batchline.dask.load_files``: one partition (job) per file."""
    try:
        dask_module = importlib.import_module("batchline.dask")
    except ImportError as exc:
        fail(
            f"the Dask backend is not available ({exc}); install it with "
            "pip install 'batchline[dask]'"
        )
    load_files = getattr(dask_module, "load_files", None)
    if load_files is None:
        fail("the Dask backend is not available: batchline.dask has no load_files")
    result = load_files(
        pattern,
        db=url,
        table=spec["table"],
        spec=spec,
        scheduler=scheduler,
        workers=workers,
        job=job,
        restart=restart,
        max_failures=max_failures,
    )
    emit_result(result, as_json=as_json, quiet=quiet, title="load (dask)", url=url)
