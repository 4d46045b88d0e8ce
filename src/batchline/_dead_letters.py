"""The dead-letter table as an API: list, export, replay, purge.

Replay feeds dead letters back through a pipeline. Each replayed record that now lands
removes its dead letter in the same transaction as its data; one that fails again keeps its
row, with the attempt count raised and the new reason, so nothing is ever lost or doubled.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import sqlalchemy as sa

from ._database import Session, make_engine
from ._dialects import dialect_for
from ._job_lock import is_held
from ._payload import refusal
from ._result import Result
from ._state import StateStore
from ._state_rows import DeadLetter, JobState
from ._state_tables import StateTables

__all__ = ["DeadLetters"]

log = logging.getLogger("batchline")


@dataclass(frozen=True, slots=True)
class _ReplayRecord:
    position: int
    line: int
    data: Any
    dead_letter_id: int
    attempts: int


class DeadLetters:
    """Dead letters (and jobs) of one database."""

    def __init__(
        self,
        db: str | sa.Engine | sa.URL,
        *,
        prefix: str = "batchline_",
        schema: str | None = None,
    ) -> None:
        self.engine, self._owns = make_engine(db)
        self.tables = StateTables(prefix, schema)
        self.dialect = dialect_for(self.engine)
        self.store = StateStore(self.tables, self.dialect)
        self._ready = False

    def close(self) -> None:
        if self._owns:
            self.engine.dispose()

    def __enter__(self) -> DeadLetters:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _session(self) -> Session:
        if not self._ready:
            self.tables.create(self.engine)
            self._ready = True
        return Session(self.engine, self.dialect)

    def _read(self, fn: Callable[[Session], Any]) -> Any:
        session = self._session()
        try:
            session.begin()
            value = fn(session)
            session.commit()
            return value
        except Exception:
            session.rollback()
            raise
        finally:
            session.close()

    def jobs(self) -> list[JobState]:
        """Every job with its position, counts and status, oldest first.

        A job whose row says ``running`` but that no runner holds is shown ``interrupted``:
        its runner died, or gave up while the database was away, before it could say so.
        """
        return [self._live(j) for j in self._read(self.store.list_jobs)]

    def job(self, name: str) -> JobState | None:
        found: JobState | None = self._read(lambda s: self.store.get_job(s, name))
        return None if found is None else self._live(found)

    def _live(self, job: JobState) -> JobState:
        if job.status != "running" or is_held(self.engine, self.dialect, self.tables, job.name):
            return job
        return dataclasses.replace(job, status="interrupted")

    def list(self, job: str | None = None, *, limit: int | None = None) -> list[DeadLetter]:
        """Dead letters, oldest first, optionally of one job."""
        return list(self._read(lambda s: self.store.list_dead_letters(s, job, limit=limit)))

    def get(self, dead_letter_id: int) -> DeadLetter | None:
        found = self._read(lambda s: self.store.list_dead_letters(s, ids=[dead_letter_id]))
        return found[0] if found else None

    def iter(self, job: str | None = None, *, page: int = 1000) -> Iterator[DeadLetter]:
        """All dead letters in id order, read a page at a time (memory stays flat)."""
        after = 0
        while True:
            batch: list[DeadLetter] = self._read(
                lambda s, start=after: self.store.list_dead_letters(  # type: ignore[misc]
                    s, job, limit=page, after_id=start
                )
            )
            if not batch:
                return
            yield from batch
            after = batch[-1].id

    def export(self, out: IO[str], job: str | None = None) -> int:
        """Write dead letters as JSON Lines to ``out``; returns how many."""
        n = 0
        for letter in self.iter(job):
            out.write(json.dumps(letter.to_dict(), ensure_ascii=False) + "\n")
            n += 1
        return n

    def purge(self, job: str | None = None) -> int:
        """Delete dead letters (of one job, or all); returns how many were deleted."""
        return int(self._read(lambda s: self.store.purge_dead_letters(s, job)))

    def replay(
        self,
        pipeline: Any,
        map: Callable[[dict[str, Any], Any], None] | None = None,
        *,
        job: str | None = None,
        stages: tuple[str, ...] = ("map", "lookup", "write"),
        idempotency_key: Callable[[dict[str, Any]], Any] | None = None,
        wait: bool | float = False,
    ) -> Result:
        """Run dead letters (of ``job``, or all) through ``pipeline`` again.

        The ones that now land leave the table in the same transaction as their data; the
        others stay with ``attempts`` raised. Read-stage letters hold raw text, not records,
        so they are left alone unless ``stages`` includes ``"read"``; so are letters whose
        record was too large to store whole (``DeadLetter.truncated``).

        One replay runs at a time per database (two would both apply the same letters):
        another one running raises :class:`~batchline.JobLocked`, or is waited for as
        ``wait`` says (see :meth:`Pipeline.run`).

        Letters that do not hold their record as read (stored with
        ``dead_letter_payload="keys"`` or ``"none"``, or with fields redacted) cannot be
        replayed: they stay as they are, and ``Result.message`` names them and says why.
        """
        snapshot = [d for d in self.iter(job) if d.stage in stages and not d.truncated]
        refused = [d for d in snapshot if not d.replayable]
        if refused:
            snapshot = [d for d in snapshot if d.replayable]

        def records() -> Iterator[_ReplayRecord]:
            for i, d in enumerate(snapshot, start=1):
                yield _ReplayRecord(i, d.line, d.record, d.id, d.attempts)

        result: Result = pipeline._run_source(
            records(),
            map,
            job=None,
            idempotency_key=idempotency_key,
            job_prefix=f"replay-{job}" if job else "replay",
            wait=wait,
            lock_kind="replay",
        )
        if refused:
            result.message = refusal(refused)
            log.warning("%s", result.message)
        return result
