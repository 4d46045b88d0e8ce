"""How the command line shows things: result summaries, job and dead-letter tables, progress.

Rendering is kept apart from the commands so they stay "parse, call, render". Everything
here writes through a rich ``Console``; off a terminal rich prints plain text, and the
progress bar is not shown at all.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from .._result import FailedItem, Result
from .._sources import FileSource, ReadFailure, SourceItem
from .._state_rows import DeadLetter, JobState

__all__ = [
    "LoadProgress",
    "render_dead_letter",
    "render_dead_letters",
    "render_jobs",
    "render_result",
    "stderr_console",
    "stdout_console",
]

_SHOWN_FAILURES = 10
_MESSAGE_WIDTH = 90
_PLAIN_WIDTH = 200


def stdout_console() -> Console:
    """The console summaries and tables go to (standard output).

    Off a terminal there is no width to fit, so tables get room rather than being cut.
    """
    console = Console(highlight=False, soft_wrap=False)
    if not console.is_terminal:
        console = Console(highlight=False, soft_wrap=False, width=_PLAIN_WIDTH)
    return console


def stderr_console() -> Console:
    """The console the progress bar goes to (standard error, so ``--json`` stays clean)."""
    return Console(stderr=True, highlight=False)


def _short(text: str, width: int = _MESSAGE_WIDTH) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def render_result(
    console: Console,
    result: Mapping[str, Any],
    *,
    title: str,
    db_hint: str = "",
    letters_job: str | None = None,
) -> None:
    """A summary of a run: counts, speed, and the first few failed records with the reason.

    ``db_hint`` is appended to the suggested ``dlq list`` command (e.g. ``" --db URL"``);
    ``letters_job`` is the job the dead letters are under when it is not the run's own (a
    replay's letters stay under the job they came from).
    """
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value")
    status = str(result["status"])
    colour = {"success": "green", "partial_success": "yellow"}.get(status, "red")
    table.add_row("status", f"[{colour}]{status}[/]")
    table.add_row("job", Text(str(result.get("job"))))
    table.add_row("records processed", f"{result['items_processed']:,}")
    table.add_row("records failed", f"{result['items_failed']:,}")
    if result.get("duplicates_skipped"):
        table.add_row("duplicates skipped", f"{result['duplicates_skipped']:,}")
    if result.get("resumed_from"):
        table.add_row("resumed after record", f"{result['resumed_from']:,}")
    table.add_row("time", f"{result['processing_time_seconds']:.2f} s")
    table.add_row("records/s", f"{result['records_per_second']:,.0f}")
    table.add_row(
        "transactions / statements",
        f"{result['chunks_committed']:,} / {result['statements']:,}",
    )
    if result.get("retries") or result.get("isolation_flushes"):
        table.add_row(
            "retries / isolation flushes",
            f"{result['retries']:,} / {result['isolation_flushes']:,}",
        )
    console.print(table)
    if result.get("message"):
        console.print(Text(str(result["message"])))
    failed: Sequence[Mapping[str, Any]] = result.get("failed_items") or ()
    if failed:
        partitioned = "partitions" in result  # a Dask run: each file is its own job
        shown = Table(title="failed records", title_justify="left")
        if partitioned:
            shown.add_column("job")
        shown.add_column("line", justify="right")
        shown.add_column("stage")
        shown.add_column("error", overflow="fold")
        for item in failed[:_SHOWN_FAILURES]:
            cells = [str(item["line"]), str(item["stage"]), _short(str(item["error"]))]
            if partitioned:
                cells.insert(0, str(item.get("job")))
            shown.add_row(*map(Text, cells))
        console.print(shown)
        more = int(result["items_failed"]) - min(len(failed), _SHOWN_FAILURES)
        if more > 0:
            console.print(f"… and {more:,} more")
        job = "JOB" if partitioned else letters_job or result.get("job")
        console.print(f"All of them: batchline dlq list --job {job}{db_hint}", markup=False)


def render_jobs(console: Console, jobs: Sequence[JobState]) -> None:
    """The jobs of a database, one row each."""
    if not jobs:
        console.print("no jobs")
        return
    table = Table(title="jobs", title_justify="left")
    states = [_broker_state(job) for job in jobs]
    columns = [
        ("name", "left"),
        ("status", "left"),
        ("position", "right"),
        ("processed", "right"),
        ("failed", "right"),
        ("duplicates", "right"),
        ("updated", "left"),
    ]
    if any(states):  # a broker consumer's lag, as it last recorded it
        columns.insert(3, ("lag", "right"))
    for name, justify in columns:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for job, state in zip(jobs, states):
        # a consumer's position is its broker's: the last committed stream ID or sequence,
        # and the broker's own last one when the consumer recorded it
        at = _broker_position(job)
        position = f"{job.position:,}" if at is None else at
        if state and state.get("end") is not None:
            position += f" of {state['end']}"
        cells: list[Text | str] = [
            Text(job.name),
            job.status,
            position,
            f"{job.processed:,}",
            f"{job.failed:,}",
            f"{job.duplicates:,}",
            job.updated_at,
        ]
        if any(states):
            lag = state.get("lag") if state else None
            cells.insert(3, "" if not state else "?" if lag is None else f"{lag:,}")
        table.add_row(*cells)
    console.print(table)


def _broker_state(job: JobState) -> dict[str, Any] | None:
    """What a consumer last recorded of its broker: ``{"lag", "end", "at"}`` (see
    ``batchline._streams._lag``), or None."""
    spec = _spec_of(job)
    state = spec.get("broker_state") if isinstance(spec, dict) else None
    return state if isinstance(state, dict) else None


def _spec_of(job: JobState) -> Any:
    if not job.spec:
        return None
    try:
        return json.loads(job.spec)
    except ValueError:
        return job.spec


def _broker_position(job: JobState) -> str | None:
    spec = _spec_of(job)
    if not isinstance(spec, dict) or spec.get("command") != "consume":
        return None
    from .._streams import broker_position

    return broker_position(spec, job.position)


def job_to_dict(job: JobState) -> dict[str, Any]:
    """A job as JSON: its fields, with the stored spec parsed (and, for a broker consumer,
    ``broker_position``: the last committed stream ID or sequence; with ``broker_lag``,
    ``broker_end`` and ``broker_state_at`` as the consumer last recorded them)."""
    spec = _spec_of(job)
    extra: dict[str, Any] = {}
    at = _broker_position(job)
    if at is not None:
        extra["broker_position"] = at
    state = _broker_state(job)
    if state is not None:
        extra["broker_lag"] = state.get("lag")
        extra["broker_end"] = state.get("end")
        extra["broker_state_at"] = state.get("at")
    return {
        "name": job.name,
        "status": job.status,
        "position": job.position,
        "processed": job.processed,
        "failed": job.failed,
        "duplicates": job.duplicates,
        "chunks": job.chunks,
        "spec": spec,
        "started_at": job.started_at,
        "updated_at": job.updated_at,
        "finished_at": job.finished_at,
        **extra,
    }


def render_dead_letters(console: Console, letters: Sequence[DeadLetter]) -> None:
    """Dead letters, one row each, messages shortened (``dlq show ID`` has them whole)."""
    if not letters:
        console.print("no dead letters")
        return
    table = Table(title="dead letters", title_justify="left")
    table.add_column("id", justify="right")
    table.add_column("job")
    table.add_column("line", justify="right")
    table.add_column("stage")
    table.add_column("error")
    table.add_column("attempts", justify="right")
    for d in letters:
        table.add_row(
            str(d.id),
            Text(d.job),
            str(d.line),
            d.stage,
            Text(_short(_with_class(d.error_class, d.message))),
            str(d.attempts),
        )
    console.print(table)


def _with_class(error_class: str, message: str) -> str:
    """``Class: message``, without doubling a class the message already starts with."""
    if message.startswith(f"{error_class}:"):
        return message
    return f"{error_class}: {message}"


def render_dead_letter(console: Console, letter: DeadLetter) -> None:
    """One dead letter in full, with its record."""
    table = Table(show_header=False, title=f"dead letter {letter.id}", title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value", overflow="fold")
    for what, value in (
        ("job", letter.job),
        ("position", str(letter.position)),
        ("line", str(letter.line)),
        ("stage", letter.stage),
        ("error class", letter.error_class),
        ("message", letter.message),
        ("attempts", str(letter.attempts)),
        ("created", letter.created_at),
    ):
        table.add_row(what, Text(value))
    console.print(table)
    mode = letter.payload_mode
    if mode == "none":
        console.print("record: not stored (dead_letter_payload='none')", markup=False)
        return
    what = {"keys": "record (key fields only):"}.get(mode, "record:")
    if letter.redacted:
        what = what[:-1] + f" ({', '.join(letter.redacted)} redacted):"
    console.print(what, markup=False)
    console.print(json.dumps(letter.record, indent=2, ensure_ascii=False), markup=False)


class LoadProgress:
    """A progress bar fed from the source as records are read (the run itself blocks).

    Shows records, records/s, failures so far and an ETA when the file's size is known. Read
    and conversion failures count as they are met; lookup and write failures as each chunk
    that found them commits (``on_chunk``, on the flush thread: rich's bar is thread-safe).
    A chunk written in bulk meets no record one by one: its read and conversion failures
    count when it commits (the bar shows whichever count is ahead).
    """

    _EVERY = 256  # records between bar updates: the bar must cost nothing per record

    def __init__(self, console: Console, source: FileSource) -> None:
        self.source = source
        self.records = 0
        self.failures = 0  # read and map failures, as met
        self.database_failures = 0  # lookup and write failures, as their chunks commit
        self.committed_failures = 0  # every failure, as its chunk commits
        self._started = time.perf_counter()
        size = source.size_bytes
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[records]:,} records"),
            TextColumn("{task.fields[rate]:,.0f}/s"),
            TextColumn("{task.fields[failed]:,} failed"),
            TimeElapsedColumn(),
            TimeRemainingColumn() if size else TextColumn(""),
            console=console,
            transient=False,
        )
        self.task: TaskID = self.progress.add_task(
            "loading", total=size or None, records=0, rate=0.0, failed=0
        )

    def on_item(self, item: SourceItem) -> None:
        self.records += 1
        if isinstance(item, ReadFailure):
            self.failures += 1
        if self.records % self._EVERY == 0:
            self.refresh()

    def on_map_failure(self) -> None:
        self.failures += 1

    def on_chunk(self, result: Result, failed: Sequence[FailedItem]) -> None:
        self.database_failures += sum(1 for f in failed if f.stage in ("lookup", "write"))
        self.committed_failures += len(failed)
        # a chunk written in bulk (batchline._arrow_write) has no item read one by one
        self.records = max(self.records, result.records_seen)
        self.refresh()

    def refresh(self) -> None:
        elapsed = max(time.perf_counter() - self._started, 1e-9)
        self.progress.update(
            self.task,
            completed=self.source.bytes_read,
            records=self.records,
            rate=self.records / elapsed,
            failed=max(self.failures + self.database_failures, self.committed_failures),
        )

    @contextmanager
    def shown(self) -> Iterator[LoadProgress]:
        with self.progress:
            try:
                yield self
            finally:
                self.refresh()
