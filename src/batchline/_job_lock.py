"""One runner per job: a run holds its job from before it reads the checkpoint to its end.

Two runners of one job (a cron run overlapping the last one, two pods after a deploy) would
both start from the same checkpoint and both apply the same records. So a run takes a lock
named after its job, and after the place its state tables are in, before it reads the job's
row, and keeps it until it has recorded the job's end. A second runner is refused at once
with :class:`~batchline.JobLocked`, or waits when asked to.

How the lock is held, per database (the SQL is the dialect's):

- **PostgreSQL, MySQL/MariaDB**: a session lock (``pg_try_advisory_lock``, ``GET_LOCK``) of the
  very connection that commits the run's chunks. The server drops it with the connection, so
  a killed runner leaves nothing to clean up. Should that connection break mid-run, the run
  takes the lock again on the new one before it sends anything else, and stops if another
  runner took it meanwhile (the flush also checks the checkpoint did not move under it).
- **SQLite**: ``flock`` on a file beside the database (``shop.db.batchline-locks/<hash>.lock``),
  which the kernel drops when the process dies. Chosen over a lease row with a heartbeat:
  a lease can only be proven stale by waiting out its timeout, so a resume after a crash
  would wait, and a paused runner (SIGSTOP, a laptop asleep) could wake up believing it still
  holds a lease another runner took. An in-memory database has no file and no second runner.

Who holds a job (host, pid, start) is written to the ``runners`` state table when the run
starts, so that a refused runner can say who it is waiting for.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa

from ._database import Session
from ._dialects import Dialect, Executor
from ._errors import JobLocked
from ._state_rows import now_iso
from ._state_tables import StateTables

__all__ = ["JobLock", "is_held", "this_runner"]

try:  # POSIX; elsewhere SQLite jobs are not locked across processes
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


def this_runner() -> dict[str, Any]:
    """How this process describes itself in the runners table."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "since": now_iso()}


def _wait_seconds(wait: bool | float | None) -> float:
    if wait is None or wait is False:
        return 0.0
    if wait is True:
        return math.inf
    return max(0.0, float(wait))


#: Per engine, where its connections put unqualified tables (``Dialect.lock_place``).
_PLACES: weakref.WeakKeyDictionary[sa.Engine, str] = weakref.WeakKeyDictionary()


class JobLock:
    """The lock of one job (or of dead-letter replay) of one set of state tables.

    Args:
        engine, dialect: the run's database.
        tables: the state tables (their schema and prefix are part of the lock's name).
        job: the job's name.
        kind: ``"job"``, or ``"replay"`` for the one dead-letter replay a database runs at
            a time.
        wait: ``False``/``None`` to be refused at once when another runner holds it, ``True``
            to wait for as long as it takes, or a number of seconds to wait at most.
    """

    def __init__(
        self,
        engine: sa.Engine,
        dialect: Dialect,
        tables: StateTables,
        job: str,
        *,
        kind: str = "job",
        wait: bool | float | None = False,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.engine = engine
        self.dialect = dialect
        self.tables = tables
        self.job = job
        self.kind = kind
        self._wait = _wait_seconds(wait)
        self._sleep = sleep
        self._name: str | None = None  # the lock's full name, once its place is known
        self._file: IO[bytes] | None = None
        self._taken = False  # whether this run has held it (then it never waits again)

    @property
    def by_connection(self) -> bool:
        return self.dialect.locks_by_connection

    @property
    def held(self) -> bool:
        """Whether this run took the lock (a connection lock is taken again, or found lost,
        on the next connection)."""
        return self._taken

    @property
    def key(self) -> str:
        """The lock's name as a fixed-width hex key (the runners table's primary key)."""
        if self._name is None:
            raise RuntimeError("the job lock has not been taken yet")
        return self.dialect.lock_digest(self._name).hex()

    def _place(self, ex: Executor) -> str:
        """Where unqualified state tables live: asked once per engine (a round trip each
        run otherwise), and only when the state tables have no schema of their own."""
        if self.tables.schema:
            return self.tables.schema
        place = _PLACES.get(self.engine)
        if place is None:
            place = _PLACES[self.engine] = self.dialect.lock_place(ex)
        return place

    def _full_name(self, place: str) -> str:
        schema, prefix = self.tables.schema or place, self.tables.prefix
        return f"batchline-{self.kind}:{schema}:{prefix}:{self._held}"

    @property
    def _held(self) -> str:
        """What the lock is of: the job, or for a replay the database's dead letters (one
        replay at a time, whatever its run is called)."""
        return self.job if self.kind == "job" else ""

    # -- taking it ------------------------------------------------------------------------------
    def on_connect(self, ex: Executor, commit: Callable[[], None]) -> None:
        """Take the lock on a fresh connection of the run (connection-held locks).

        The first time, this waits as the run asked. After that (the connection broke and
        this is its replacement) it never waits: another runner holding the job now means
        this run lost it, and must stop.
        """
        if self._name is None:
            self._name = self._full_name(self._place(ex))
        name = self._name
        deadline = time.monotonic() + (0.0 if self._taken else self._wait)
        delay = 0.05
        while True:
            got = self.dialect.try_lock(ex, name)
            commit()  # the lock is the session's; end the statement's transaction
            if got:
                self._taken = True
                return
            if self._taken:
                holder = self.holder()
                mine = holder is not None and holder.get("pid") == os.getpid()
                who = (
                    "this run's previous connection, which the server has not yet seen go"
                    if mine
                    else f"another runner ({self._describe(holder)})"
                )
                raise JobLocked(
                    self.job,
                    holder,
                    message=f"job {self.job!r} is held by {who}, after this run's connection "
                    "was lost; this run stops, and a later run resumes from the checkpoint",
                )
            self._pause(deadline, delay)
            delay = min(delay * 2, 1.0)

    def take_file(self) -> None:
        """Take the lock as a file lock (SQLite), waiting as the run asked."""
        path = lock_path(self.engine, self.tables, self._held, self.kind)
        self._name = self._full_name(str(path.parent) if path else "")
        if path is None or fcntl is None:
            self._taken = True  # an in-memory database: no other process can share it
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("ab")
        deadline = time.monotonic() + self._wait
        delay = 0.05
        try:
            while True:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    self._pause(deadline, delay)
                    delay = min(delay * 2, 1.0)
                    continue
                self._file, self._taken = handle, True
                return
        except BaseException:
            handle.close()
            raise

    def _pause(self, deadline: float, delay: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise JobLocked(self.job, self.holder(), message=self._refusal())
        self._sleep(min(delay, left))

    def _refusal(self) -> str:
        holder = self.holder()
        what = (
            "dead letters are being replayed"
            if self.kind == "replay"
            else f"job {self.job!r} is being run"
        )
        waited = "" if self._wait == 0 else f" (waited {self._wait:g} s)"
        return (
            f"{what} by another runner ({self._describe(holder)}){waited}; wait for it to "
            "end (wait=True / --wait) or use another job name"
        )

    @staticmethod
    def _describe(holder: dict[str, Any] | None) -> str:
        if not holder:
            return "holder not recorded yet"
        return f"host {holder['host']}, pid {holder['pid']}, since {holder['since']}"

    def holder(self) -> dict[str, Any] | None:
        """What the holder wrote about itself when it started, if it has yet."""
        if self._name is None:
            return None
        runners = self.tables.runners
        try:
            with self.engine.connect() as conn:
                row = conn.execute(
                    sa.select(runners.c.host, runners.c.pid, runners.c.started_at).where(
                        runners.c.lock_key == self.key
                    )
                ).first()
        except sa.exc.SQLAlchemyError:
            return None
        if row is None:
            return None
        return {"host": row.host, "pid": int(row.pid), "since": row.started_at}

    # -- giving it back ---------------------------------------------------------------------------
    def release(self, ex: Executor | None, commit: Callable[[], None] | None = None) -> None:
        """Give the lock back (on the connection that holds it, for connection locks)."""
        taken, self._taken = self._taken, False
        if self._file is not None:
            handle, self._file = self._file, None
            with contextlib.suppress(OSError):
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            handle.close()
        elif ex is not None and taken and self._name is not None:
            self.dialect.unlock(ex, self._name)
            if commit is not None:
                commit()


def lock_path(engine: sa.Engine, tables: StateTables, job: str, kind: str = "job") -> Path | None:
    """The lock file of a SQLite job: ``<database>.batchline-locks/<hash>.lock``, or None for
    an in-memory database."""
    database = engine.url.database
    if not database or database == ":memory:" or "mode=memory" in str(engine.url):
        return None
    base = Path(database).expanduser().resolve()
    digest = Dialect.lock_digest(f"{kind}:{tables.schema or ''}:{tables.prefix}:{job}").hex()
    return base.parent / f"{base.name}.batchline-locks" / f"{digest[:32]}.lock"


def is_held(engine: sa.Engine, dialect: Dialect, tables: StateTables, job: str) -> bool:
    """Whether a runner holds ``job`` now (so a job row saying "running" is true)."""
    if not dialect.locks_by_connection:
        path = lock_path(engine, tables, job)
        if path is None or fcntl is None or not path.exists():
            return False
        with path.open("ab") as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            return False
    session = Session(engine, dialect)
    try:
        probe = JobLock(engine, dialect, tables, job)
        name = probe._full_name(probe._place(session))
        free = dialect.try_lock(session, name)
        if free:
            dialect.unlock(session, name)
        session.commit()
        return not free
    finally:
        session.close()
