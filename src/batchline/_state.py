"""The statements on the state tables (``_state_tables``): a job's start, checkpoint and end,
the ledger, the dead letters.

Each runs inside the caller's transaction: a chunk's rows, its idempotency keys, its dead
letters and the job's new position commit together, so a crash can never leave the
bookkeeping ahead of, or behind, the data.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ._dialects import Dialect, Executor
from ._sizes import fit_payload
from ._state_rows import DeadLetter, JobState, now_iso
from ._state_tables import StateTables

__all__ = ["StateStore"]


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
        #: Whether the last claim found none of its keys in the ledger: then the next one
        #: expects the same (a consumer, a new file) and skips the lookup where the dialect
        #: can (``_dialects._ledger``). A hint only: either value claims correctly.
        self._fresh_keys = True

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
    def ledger_claim(self, ex: Executor, namespace: str, job: str, keys: Iterable[str]) -> set[str]:
        """Claim ``keys`` (distinct) for the open transaction: add those the ledger lacks,
        and return those it had already (the duplicates). Before the try's writes, so a key
        claimed by a record that then fails must be given back (:meth:`ledger_release`)."""
        ordered = sorted(keys)  # the same lock order in every runner
        if not ordered:
            return set()
        found = self._dialect.claim_keys(
            ex, self.ledger, namespace, job, now_iso(), ordered, fresh=self._fresh_keys
        )
        self._fresh_keys = not found
        return found

    def ledger_release(self, ex: Executor, namespace: str, keys: Sequence[str]) -> None:
        """Give back claims of the open transaction whose records did not land (left out
        of an insert, or failed a lookup, after the claim)."""
        q = self._q
        per = max(1, self._dialect.params_per_statement(ex) - 1)
        for start in range(0, len(keys), per):
            cond, params = self._dialect.any_of(q("key_hash"), keys[start : start + per])
            ex.execute(
                f"DELETE FROM {self.ledger} WHERE {q('namespace')} = {self._p} AND {cond}",  # noqa: S608
                [namespace, *params],
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
