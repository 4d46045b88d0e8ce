"""State tables in the target database: jobs (checkpoints), the ledger, the dead letters.

They live beside the data so that a chunk's rows, its idempotency keys, its dead letters
and the job's new position commit in one transaction: a crash can never leave the
bookkeeping ahead of, or behind, the data. ``batchline_schema`` records the layout version
so a later release can migrate.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from ._dialects import Dialect, Executor
from ._errors import ConfigError
from ._payload import read_payload
from ._sizes import TRUNCATED, fit_payload

__all__ = [
    "SCHEMA_VERSION",
    "DeadLetter",
    "JobState",
    "StateStore",
    "StateTables",
    "key_hash",
    "now_iso",
    "to_json",
]

SCHEMA_VERSION = 1
_create_lock = threading.Lock()
#: Dead letters hold whole records and database messages: unbounded text. MySQL's TEXT stops
#: at 64 KiB, so there it is LONGTEXT (4 GiB; a statement's max_allowed_packet binds first).
_LONG_TEXT = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)  # anything else is kept as its text, never dropped


def to_json(value: Any) -> str:
    """JSON for payloads; what JSON cannot hold is stored as text rather than lost."""
    try:
        return json.dumps(value, default=_json_default, ensure_ascii=False)
    except (TypeError, ValueError):
        return json.dumps(str(value), ensure_ascii=False)


def key_hash(key: Any) -> str:
    """A fixed-width ledger key for any idempotency key value (tuples, strings, numbers)."""
    return hashlib.sha256(to_json(key).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class JobState:
    name: str
    fingerprint: str | None
    position: int
    processed: int
    failed: int
    duplicates: int
    chunks: int
    status: str
    spec: str | None
    started_at: str
    updated_at: str
    finished_at: str | None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int
    job: str
    position: int
    line: int
    stage: str
    error_class: str
    message: str
    payload: str
    attempts: int
    created_at: str

    @property
    def record(self) -> Any:
        """The record as stored: whole (``payload_mode`` ``"full"``, redacted fields
        blanked), only its key fields (``"keys"``), or None (``"none"``)."""
        return read_payload(self.payload).record

    @property
    def payload_mode(self) -> str:
        """What the letter keeps of its record: ``"full"``, ``"keys"`` or ``"none"``."""
        return read_payload(self.payload).mode

    @property
    def redacted(self) -> tuple[str, ...]:
        """The fields whose values were replaced by ``[redacted]``."""
        return read_payload(self.payload).redacted

    @property
    def replayable(self) -> bool:
        """Whether the letter holds its record as read, which replay needs."""
        return read_payload(self.payload).replayable

    @property
    def truncated(self) -> bool:
        """Whether the payload was too large to store and holds only its head (the record
        is then ``{"batchline_truncated": {"bytes": …, "head": …}}``; it cannot be replayed)."""
        return self.payload.startswith('{"' + TRUNCATED + '"')

    def to_dict(self) -> dict[str, Any]:
        stored = read_payload(self.payload)
        return {
            "id": self.id,
            "job": self.job,
            "position": self.position,
            "line": self.line,
            "stage": self.stage,
            "error_class": self.error_class,
            "message": self.message,
            "record": stored.record,
            "payload_mode": stored.mode,
            "redacted": list(stored.redacted),
            "attempts": self.attempts,
            "created_at": self.created_at,
        }


def _created_meanwhile(exc: sa.exc.DBAPIError) -> bool:
    """Whether a CREATE TABLE failed because another process had just created it (MySQL
    1050, PostgreSQL 42P07 or its catalog's unique type name, SQLite "already exists")."""
    text = str(exc.orig if exc.orig is not None else exc)
    return "already exists" in text or "pg_type_typname_nsp_index" in text


class StateTables:
    """The SQLAlchemy definitions of the state tables, under a prefix and optional schema."""

    def __init__(self, prefix: str = "batchline_", schema: str | None = None) -> None:
        if not prefix.replace("_", "").isalnum():
            raise ConfigError(f"state table prefix must be letters, digits and _: {prefix!r}")
        self.prefix = prefix
        self.schema = schema
        self.metadata = sa.MetaData(schema=schema)
        self.meta = sa.Table(
            f"{prefix}schema", self.metadata, sa.Column("version", sa.Integer, nullable=False)
        )
        self.jobs = sa.Table(
            f"{prefix}jobs",
            self.metadata,
            sa.Column("name", sa.String(255), primary_key=True),
            sa.Column("fingerprint", sa.String(255)),
            sa.Column("position", sa.BigInteger, nullable=False, default=0),
            sa.Column("processed", sa.BigInteger, nullable=False, default=0),
            sa.Column("failed", sa.BigInteger, nullable=False, default=0),
            sa.Column("duplicates", sa.BigInteger, nullable=False, default=0),
            sa.Column("chunks", sa.BigInteger, nullable=False, default=0),
            sa.Column("status", sa.String(32), nullable=False),
            sa.Column("spec", sa.Text),
            sa.Column("started_at", sa.String(40), nullable=False),
            sa.Column("updated_at", sa.String(40), nullable=False),
            sa.Column("finished_at", sa.String(40)),
        )
        self.ledger = sa.Table(
            f"{prefix}ledger",
            self.metadata,
            sa.Column("namespace", sa.String(191), primary_key=True),
            sa.Column("key_hash", sa.String(64), primary_key=True),
            sa.Column("job", sa.String(255), nullable=False),
            sa.Column("created_at", sa.String(40), nullable=False),
        )
        self.dead_letters = sa.Table(
            f"{prefix}dead_letters",
            self.metadata,
            sa.Column(
                "id",
                sa.BigInteger().with_variant(sa.Integer, "sqlite"),
                primary_key=True,
                autoincrement=True,
            ),
            sa.Column("job", sa.String(255), nullable=False),
            sa.Column("position", sa.BigInteger, nullable=False),
            sa.Column("line", sa.BigInteger, nullable=False),
            sa.Column("stage", sa.String(16), nullable=False),
            sa.Column("error_class", sa.String(100), nullable=False),
            sa.Column("message", _LONG_TEXT, nullable=False),
            sa.Column("payload", _LONG_TEXT, nullable=False),
            sa.Column("attempts", sa.Integer, nullable=False, default=1),
            sa.Column("created_at", sa.String(40), nullable=False),
            sa.Index(f"{prefix}dead_letters_job", "job", "position"),
        )

        #: Who holds each job now (see batchline._job_lock): what a refused runner reports.
        self.runners = sa.Table(
            f"{prefix}runners",
            self.metadata,
            sa.Column("lock_key", sa.String(64), primary_key=True),
            sa.Column("job", sa.String(255), nullable=False),
            sa.Column("host", sa.String(255), nullable=False),
            sa.Column("pid", sa.BigInteger, nullable=False),
            sa.Column("started_at", sa.String(40), nullable=False),
        )

    def create(self, engine: sa.Engine) -> None:
        """Create missing state tables and check the layout version (idempotent, race-safe).

        The common case, every table there, costs one catalog query and one read
        (:meth:`ready`): a run's start is a few round trips, not one per table. Anything
        missing takes the careful way.
        """
        with engine.connect() as conn:
            if self.ready(conn):
                return
        with _create_lock:
            # Another process may create a table between the check and the CREATE; each such
            # collision means it got further, so there are at most as many as tables.
            attempts = len(self.metadata.tables) + 2
            for attempt in range(attempts):
                try:
                    self.metadata.create_all(engine, checkfirst=True)
                    break
                except sa.exc.DBAPIError as exc:
                    # only that race is retried here; anything else (a locked database, a
                    # lost connection) goes to the caller, whose retry policy counts it
                    if attempt == attempts - 1 or not _created_meanwhile(exc):
                        raise
                    time.sleep(0.02 * (attempt + 1))
            with engine.begin() as conn:
                version = conn.execute(sa.select(self.meta.c.version)).scalar()
                if version is None:
                    conn.execute(self.meta.insert().values(version=SCHEMA_VERSION))
                elif version > SCHEMA_VERSION:
                    raise ConfigError(
                        f"the state tables ({self.prefix}*) were written by a newer batchline "
                        f"(layout {version}, this release knows {SCHEMA_VERSION}); "
                        "upgrade batchline"
                    )
                self._widen_text(conn)

    def ready(self, conn: sa.Connection) -> bool:
        """Whether every state table exists with a layout this release knows (widening
        MySQL's dead letters as :meth:`create` does); the transaction is ended either way."""
        try:
            names = set(sa.inspect(conn).get_table_names(schema=self.schema))
            if not all(t.name in names for t in self.metadata.tables.values()):
                return False
            version = conn.execute(sa.select(self.meta.c.version)).scalar()
            if version is None:
                return False
            if version > SCHEMA_VERSION:
                raise ConfigError(
                    f"the state tables ({self.prefix}*) were written by a newer batchline "
                    f"(layout {version}, this release knows {SCHEMA_VERSION}); upgrade batchline"
                )
            self._widen_text(conn)
            conn.commit()
            return True
        finally:
            # (an open read would keep SQLite's lock from a CREATE on another connection)
            if conn.in_transaction():
                conn.rollback()

    def _widen_text(self, conn: sa.Connection) -> None:
        """On MySQL, make dead letters created as TEXT (before LONGTEXT) LONGTEXT.

        Done here rather than by a new layout version: LONGTEXT only widens, so a release
        that knows layout 1 still works with the widened table, and a version bump would
        make it refuse the tables for nothing. One catalog query per start; the ALTER runs
        once (a concurrent one finds the work done, or repeats it harmlessly).
        """
        if conn.dialect.name not in ("mysql", "mariadb"):
            return
        table = self.dead_letters
        narrow = conn.execute(
            sa.text(
                "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = "
                "COALESCE(:schema, DATABASE()) AND TABLE_NAME = :table AND COLUMN_NAME IN "
                "('message', 'payload') AND DATA_TYPE <> 'longtext'"
            ),
            {"schema": self.schema, "table": table.name},
        ).scalars()
        columns = sorted(narrow)
        if columns:
            quote = conn.dialect.identifier_preparer.quote
            name = (
                quote(table.name)
                if self.schema is None
                else f"{quote(self.schema)}.{quote(table.name)}"
            )
            changes = ", ".join(f"MODIFY {quote(c)} LONGTEXT NOT NULL" for c in columns)
            conn.exec_driver_sql(f"ALTER TABLE {name} {changes}")


class StateStore:
    """Reads and writes the state tables through a session, inside the caller's transaction."""

    def __init__(self, tables: StateTables, dialect: Dialect) -> None:
        self.tables = tables
        q = dialect.quote
        p = dialect.placeholder
        self._p = p
        self._q = q
        schema = f"{q(tables.schema)}." if tables.schema else ""
        self.jobs = schema + q(tables.jobs.name)
        self.ledger = schema + q(tables.ledger.name)
        self.dead = schema + q(tables.dead_letters.name)
        self.runners = schema + q(tables.runners.name)
        self._dialect = dialect
        self._job_cols = [c.name for c in tables.jobs.columns]
        self._dl_cols = [c.name for c in tables.dead_letters.columns]

    def _marks(self, n: int) -> str:
        return ", ".join([self._p] * n)

    # -- jobs ---------------------------------------------------------------------------------
    def get_job(self, ex: Executor, name: str) -> JobState | None:
        cols = ", ".join(self._q(c) for c in self._job_cols)
        rows = ex.query(
            f"SELECT {cols} FROM {self.jobs} WHERE {self._q('name')} = {self._p}",  # noqa: S608
            [name],
        )
        return JobState(*rows[0]) if rows else None

    def list_jobs(self, ex: Executor) -> list[JobState]:
        cols = ", ".join(self._q(c) for c in self._job_cols)
        rows = ex.query(f"SELECT {cols} FROM {self.jobs} ORDER BY {self._q('started_at')}")  # noqa: S608
        return [JobState(*r) for r in rows]

    def start_job(
        self, ex: Executor, name: str, fingerprint: str | None, spec: str | None, *, reset: bool
    ) -> None:
        now = now_iso()
        q = self._q
        if reset:
            self.forget_job(ex, name)
        cols = [
            "name",
            "fingerprint",
            "position",
            "processed",
            "failed",
            "duplicates",
            "chunks",
            "status",
            "spec",
            "started_at",
            "updated_at",
        ]
        ex.execute(
            f"INSERT INTO {self.jobs} ({', '.join(q(c) for c in cols)}) "  # noqa: S608
            f"VALUES ({self._marks(len(cols))})",
            [name, fingerprint, 0, 0, 0, 0, 0, "running", spec, now, now],
        )

    def forget_job(self, ex: Executor, name: str) -> None:
        """Delete a job's row and its dead letters, so that its next run starts over.

        The old attempt's dead letters would otherwise sit beside the new attempt's; the
        ledger is kept: it guards against re-applying across runs.
        """
        q = self._q
        ex.execute(f"DELETE FROM {self.jobs} WHERE {q('name')} = {self._p}", [name])  # noqa: S608
        ex.execute(f"DELETE FROM {self.dead} WHERE {q('job')} = {self._p}", [name])  # noqa: S608

    def mark_running(self, ex: Executor, name: str) -> None:
        q = self._q
        ex.execute(
            f"UPDATE {self.jobs} SET {q('status')} = {self._p}, {q('updated_at')} = {self._p}, "  # noqa: S608
            f"{q('finished_at')} = NULL WHERE {q('name')} = {self._p}",
            ["running", now_iso(), name],
        )

    def advance(
        self,
        ex: Executor,
        name: str,
        position: int,
        processed: int,
        failed: int,
        duplicates: int,
    ) -> None:
        """Move the checkpoint; part of the chunk's own transaction."""
        q, p = self._q, self._p
        ex.execute(
            f"UPDATE {self.jobs} SET {q('position')} = {p}, "  # noqa: S608
            f"{q('processed')} = {q('processed')} + {p}, {q('failed')} = {q('failed')} + {p}, "
            f"{q('duplicates')} = {q('duplicates')} + {p}, {q('chunks')} = {q('chunks')} + 1, "
            f"{q('updated_at')} = {p} WHERE {q('name')} = {p}",
            [position, processed, failed, duplicates, now_iso(), name],
        )

    def checkpoint(self, ex: Executor, name: str) -> tuple[int, int]:
        """How many transactions of the job have committed (its ``chunks`` counter), and the
        position the last of them moved it to."""
        q = self._q
        rows = ex.query(
            f"SELECT {q('chunks')}, {q('position')} FROM {self.jobs} "  # noqa: S608
            f"WHERE {q('name')} = {self._p}",
            [name],
        )
        return (int(rows[0][0]), int(rows[0][1])) if rows else (0, 0)

    # -- runners ------------------------------------------------------------------------------
    def claim_runner(
        self, ex: Executor, key: str, job: str, host: str, pid: int, since: str
    ) -> None:
        """Record who holds the lock ``key`` now (the lock itself is the dialect's)."""
        q, p = self._q, self._p
        ex.execute(f"DELETE FROM {self.runners} WHERE {q('lock_key')} = {p}", [key])  # noqa: S608
        cols = ", ".join(q(c) for c in ("lock_key", "job", "host", "pid", "started_at"))
        ex.execute(
            f"INSERT INTO {self.runners} ({cols}) VALUES ({self._marks(5)})",  # noqa: S608
            [key, job, host, pid, since],
        )

    def release_runner(self, ex: Executor, key: str) -> None:
        ex.execute(
            f"DELETE FROM {self.runners} WHERE {self._q('lock_key')} = {self._p}",  # noqa: S608
            [key],
        )

    def finish_job(self, ex: Executor, name: str, status: str) -> None:
        """Record the end of a run. A run that completed gets the status of the whole job
        (across resumes: one failure in an earlier run keeps it ``partial_success``)."""
        q, p = self._q, self._p
        now = now_iso()
        if status == "failed":
            verdict, params = p, [status]
        else:
            # decided by the row's own counters, in the statement: no read first
            verdict = (
                f"CASE WHEN {q('failed')} = 0 THEN {p} "
                f"WHEN {q('processed')} > 0 OR {q('duplicates')} > 0 THEN 'partial_success' "
                "ELSE 'failed' END"
            )
            params = [status]
        ex.execute(
            f"UPDATE {self.jobs} SET {q('status')} = {verdict}, {q('updated_at')} = {p}, "  # noqa: S608
            f"{q('finished_at')} = {p} WHERE {q('name')} = {p}",
            [*params, now, now, name],
        )

    # -- ledger -------------------------------------------------------------------------------
    def ledger_existing(self, ex: Executor, namespace: str, keys: Sequence[str]) -> set[str]:
        if not keys:
            return set()
        q = self._q
        found: set[str] = set()
        per = max(1, self._dialect.params_per_statement(ex) - 1)
        for start in range(0, len(keys), per):
            cond, params = self._dialect.any_of(q("key_hash"), keys[start : start + per])
            rows = ex.query(
                f"SELECT {q('key_hash')} FROM {self.ledger} "  # noqa: S608
                f"WHERE {q('namespace')} = {self._p} AND {cond}",
                [namespace, *params],
            )
            found.update(r[0] for r in rows)
        return found

    def ledger_add(self, ex: Executor, namespace: str, job: str, keys: Sequence[str]) -> None:
        if not keys:
            return
        now = now_iso()
        rows = [(namespace, k, job, now) for k in keys]
        self._dialect.insert_many(
            ex, self.ledger, ["namespace", "key_hash", "job", "created_at"], rows, ["text"] * 4
        )

    # -- dead letters -------------------------------------------------------------------------
    def add_dead_letters(self, ex: Executor, job: str, letters: Iterable[tuple[Any, ...]]) -> None:
        """Insert (position, line, stage, error_class, message, payload, attempts) rows."""
        now = now_iso()
        rows = [(job, *letter, now) for letter in letters]
        if not rows:
            return
        cols = [
            "job",
            "position",
            "line",
            "stage",
            "error_class",
            "message",
            "payload",
            "attempts",
            "created_at",
        ]
        types = ["text", "bigint", "bigint", "text", "text", "text", "text", "integer", "text"]
        limit = self._dialect.row_limit(ex)
        if limit is None:
            self._dialect.insert_many(ex, self.dead, cols, rows, types)
            return
        # each letter fits on its own (cut if need be), and a statement takes letters up
        # to the limit (PostgreSQL sends a chunk's payloads as one array)
        batch: list[tuple[Any, ...]] = []
        room = limit.size // 2
        for row in rows:
            payload, message = fit_payload(row[6], row[5], limit, self._dialect)
            row = (*row[:5], message, payload, *row[7:])
            size = 4 * (len(payload) + len(message))
            if batch and size > room:
                self._dialect.insert_many(ex, self.dead, cols, batch, types)
                batch, room = [], limit.size // 2
            batch.append(row)
            room -= size
        self._dialect.insert_many(ex, self.dead, cols, batch, types)

    def retry_dead_letters(
        self, ex: Executor, updates: Sequence[tuple[int, str, str, str]]
    ) -> None:
        """A replayed dead letter failed again: (id, stage, error_class, message)."""
        q, p = self._q, self._p
        for dl_id, stage, error_class, message in updates:
            ex.execute(
                f"UPDATE {self.dead} SET {q('attempts')} = {q('attempts')} + 1, "  # noqa: S608
                f"{q('stage')} = {p}, {q('error_class')} = {p}, {q('message')} = {p}, "
                f"{q('created_at')} = {p} WHERE {q('id')} = {p}",
                [stage, error_class, message, now_iso(), dl_id],
            )

    def delete_dead_letters(self, ex: Executor, ids: Sequence[int]) -> None:
        per = max(1, self._dialect.params_per_statement(ex))
        for start in range(0, len(ids), per):
            batch = ids[start : start + per]
            ex.execute(
                f"DELETE FROM {self.dead} WHERE {self._q('id')} IN ({self._marks(len(batch))})",  # noqa: S608
                list(batch),
            )

    def list_dead_letters(
        self,
        ex: Executor,
        job: str | None = None,
        *,
        limit: int | None = None,
        after_id: int = 0,
        ids: Sequence[int] | None = None,
    ) -> list[DeadLetter]:
        q, p = self._q, self._p
        where = [f"{q('id')} > {p}"]
        params: list[Any] = [after_id]
        if job is not None:
            where.append(f"{q('job')} = {p}")
            params.append(job)
        if ids is not None:
            if not ids:
                return []
            where.append(f"{q('id')} IN ({self._marks(len(ids))})")
            params.extend(ids)
        cols = ", ".join(q(c) for c in self._dl_cols)
        sql = f"SELECT {cols} FROM {self.dead} WHERE {' AND '.join(where)} ORDER BY {q('id')}"  # noqa: S608
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [DeadLetter(*r) for r in ex.query(sql, params)]

    def purge_dead_letters(self, ex: Executor, job: str | None = None) -> int:
        q = self._q
        count_sql = f"SELECT COUNT(*) FROM {self.dead}"  # noqa: S608
        delete_sql = f"DELETE FROM {self.dead}"  # noqa: S608
        params: list[Any] = []
        if job is not None:
            count_sql += f" WHERE {q('job')} = {self._p}"
            delete_sql += f" WHERE {q('job')} = {self._p}"
            params.append(job)
        n = int(ex.query(count_sql, params)[0][0])
        ex.execute(delete_sql, params)
        return n
