"""Engines, URLs without passwords, and the session that runs batchline's statements.

SQLAlchemy gives us URL parsing, pooling, quoting and reflection. The hot path then runs on
the pooled DBAPI connection directly (COPY needs it, and it keeps per-statement overhead
off the loop), inside transactions batchline begins and ends itself. Every statement goes
through :class:`Session`, which is where statements are counted.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import sqlalchemy as sa

from ._dialects import Dialect, Executor
from ._errors import ConfigError

__all__ = ["Session", "StatementListener", "make_engine", "redact_url"]

#: Called with (sql, rows) for every statement batchline sends; rows is how many rows the
#: statement carries (1 for plain statements).
StatementListener = Callable[[str, int], None]

_DEFAULT_DRIVERS = {
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
}


def redact_url(url: str | sa.URL | sa.Engine) -> str:
    """The URL with its password masked, for anything a person or a log will see."""
    if isinstance(url, sa.Engine):
        url = url.url
    if isinstance(url, str):
        try:
            url = sa.make_url(url)
        except Exception:
            return "<unparseable database URL>"
    return url.render_as_string(hide_password=True)


def make_engine(db: str | sa.Engine | sa.URL) -> tuple[sa.Engine, bool]:
    """An engine for ``db``, and whether batchline owns it (and so disposes of it)."""
    if isinstance(db, sa.Engine):
        return db, False
    try:
        url = sa.make_url(db)
    except Exception as exc:
        raise ConfigError(
            f"not a database URL: {redact_url(db)!s} ({type(exc).__name__})"
        ) from None
    driver = _DEFAULT_DRIVERS.get(url.drivername)
    if driver:
        url = url.set(drivername=driver)
    kwargs: dict[str, Any] = {}
    if url.get_backend_name() == "sqlite":
        # The flush runs on batchline's own worker thread; the pool hands connections out
        # to one thread at a time.
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
    else:
        kwargs["pool_pre_ping"] = True
    if url.drivername in ("mysql+pymysql", "mariadb+pymysql"):
        # The client may send a local file (LOAD DATA LOCAL INFILE, the bulk path from
        # Arrow), but PyMySQL does so only while a Session.load_local runs
        from pymysql.constants import CLIENT

        flags = int(url.query.get("client_flag", 0) or 0)  # type: ignore[arg-type]
        kwargs["connect_args"] = {"client_flag": flags | CLIENT.LOCAL_FILES}
    try:
        engine = sa.create_engine(url, **kwargs)
    except Exception as exc:
        raise ConfigError(f"cannot use database {redact_url(url)}: {exc}") from None
    return engine, True


class Session(Executor):
    """One pooled DBAPI connection, held for a run, with explicit transactions."""

    def __init__(
        self,
        engine: sa.Engine,
        dialect: Dialect,
        listeners: Sequence[StatementListener] = (),
        *,
        autocommit: bool = False,
    ) -> None:
        self.engine = engine
        self.dialect = dialect
        self.listeners = listeners
        # For a reader's single statements: no BEGIN and no ROLLBACK round trip around each.
        # The connection goes back to the pool with the engine's default isolation.
        self.autocommit = autocommit
        self._raw: Any = None
        self._cursor: Any = None
        self._pipeline: Any = None  # an open psycopg pipeline, between begin and commit
        #: Called with the session on each fresh connection, before any other statement
        #: (the run's job lock is taken there; see batchline._job_lock).
        self.on_connect: Callable[[Session], None] | None = None

    # -- lifecycle --------------------------------------------------------------------------
    def _connection(self) -> Any:
        if self._raw is None:
            raw = self.engine.raw_connection()
            try:
                self.dialect.on_acquire(raw.driver_connection)
                if self._driver_autocommit:
                    self._set_autocommit(raw, True)
            except BaseException:
                # refused (e.g. MySQL without strict mode): back to the pool as it came
                try:
                    if self._driver_autocommit:
                        self._set_autocommit(raw, False)
                    raw.close()
                except Exception:
                    raw.invalidate()
                raise
            self._raw = raw
            self._cursor = raw.cursor()
            if self.on_connect is not None:
                try:
                    self.on_connect(self)
                except BaseException:
                    self.close()
                    raise
        return self._raw

    @property
    def _driver_autocommit(self) -> bool:
        """Whether the driver runs in autocommit: for a reader, or where the dialect opens
        transactions itself (``Dialect.explicit_begin``)."""
        return self.autocommit or self.dialect.explicit_begin

    @property
    def connected(self) -> bool:
        """Whether the session holds a connection now (statements would not open one)."""
        return self._raw is not None

    def _set_autocommit(self, raw: Any, on: bool) -> None:
        # SQLAlchemy's own switch; "off" is the engine's default isolation level
        if on:
            self.engine.dialect.set_isolation_level(raw.dbapi_connection, "AUTOCOMMIT")
        else:
            self.engine.dialect.reset_isolation_level(raw.dbapi_connection)

    @property
    def driver_connection(self) -> Any:
        return self._connection().driver_connection

    def close(self) -> None:
        self._pipeline = None
        raw, self._raw, self._cursor = self._raw, None, None
        if raw is None:
            return
        try:
            if self._driver_autocommit:
                self._set_autocommit(raw, False)
            self.dialect.on_release(raw.driver_connection)
            raw.close()
        except Exception:
            raw.invalidate()

    def discard(self) -> None:
        """Throw the connection away (it broke); the next statement gets a fresh one."""
        self._pipeline = None
        raw, self._raw, self._cursor = self._raw, None, None
        if raw is not None:
            with contextlib.suppress(Exception):
                raw.invalidate()

    # -- transactions -----------------------------------------------------------------------
    # Where the driver can pipeline (psycopg), statements whose results are not needed are
    # sent without waiting for the server; errors surface at the next query, COPY or COMMIT.
    # Over a network this turns the tail of a flush (increments, ledger, dead letters,
    # checkpoint, COMMIT) into one round trip.
    def _pipeline_on(self) -> None:
        if self.dialect.pipelines and self._pipeline is None:
            manager = self._connection().driver_connection.pipeline()
            self._pipeline = (manager, manager.__enter__())

    def _pipeline_off(self, exc: BaseException | None = None) -> None:
        """Leave pipeline mode. After ``exc`` (the error being handled), the pipeline's own
        "aborted" error is expected and dropped: psycopg would log it as a warning."""
        pipeline, self._pipeline = self._pipeline, None
        if pipeline is not None:
            try:
                pipeline[0].__exit__(None, None, None)
            except Exception:
                if exc is None:
                    raise

    def leave_pipeline(self, exc: BaseException | None = None) -> None:
        """Stop pipelining (after an error: drop what the aborted pipeline still holds), so
        the next statements, e.g. ``ROLLBACK TO SAVEPOINT``, run one by one."""
        self._pipeline_off(exc)

    def enter_pipeline(self) -> None:
        """Pipeline again, inside the current transaction."""
        self._pipeline_on()

    def sync(self) -> None:
        """Wait for every statement sent so far (raising its error); no-op unpipelined.

        By leaving pipeline mode and entering it again (the same one round trip), not with
        psycopg's ``Pipeline.sync()``: that stops sending once its queue is empty even when
        a large statement is still partly in libpq's buffer, then waits for a reply the
        server cannot send before it has read the rest. A value of a few MB could hang the
        connection for good. Leaving the pipeline flushes until all is sent.
        """
        if self._pipeline is not None:
            self._pipeline_off()
            self._pipeline_on()

    def begin(self) -> None:
        self._connection()
        self._pipeline_on()  # first, so that an explicit BEGIN is pipelined too
        self.dialect.begin(self)

    def commit(self) -> None:
        self._notify("COMMIT", 1)
        conn = self._connection()
        if self._pipeline is None:
            conn.commit()
            return
        # In the pipeline, then out of it: one round trip, and every byte sent (see sync;
        # psycopg's commit() in pipeline mode syncs the way that can hang)
        self._cursor.execute("COMMIT")
        self._pipeline_off()

    def rollback(self) -> None:
        if self._raw is None:
            return
        try:
            self._pipeline_off(RuntimeError("rolling back"))
            self._raw.rollback()
        except Exception:
            self.discard()

    # -- statements -------------------------------------------------------------------------
    def _notify(self, sql: str, rows: int) -> None:
        for listener in self.listeners:
            listener(sql, rows)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._connection()
        self._notify(sql, 1)
        self._cursor.execute(sql, params)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self._connection()
        self._notify(sql, 1)
        self._cursor.execute(sql, params)
        return [tuple(r) for r in self._cursor.fetchall()]

    def execute_each(self, sql: str, rows: Iterable[Sequence[Any]], count: int) -> None:
        self._connection()
        self._notify(sql, count)
        self._cursor.executemany(sql, rows)

    def copy_rows(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._connection()
        self._notify(sql, len(rows))
        in_pipeline = self._pipeline is not None
        self._pipeline_off()  # COPY cannot run in pipeline mode
        with self._cursor.copy(sql) as copy:
            write_row = copy.write_row
            for row in rows:
                write_row(row)
        if in_pipeline:
            self._pipeline_on()

    def load_local(self, sql: str, path: str, rows: int) -> tuple[int, int]:
        """Run MySQL's ``LOAD DATA LOCAL INFILE %s …`` of the file ``path`` (which this
        process wrote) in the open transaction; the rows it took and its warning count.

        PyMySQL sends a local file only while its ``_local_infile`` is set: it is set for
        this statement alone, so a server cannot ask for a file at any other time."""
        self._connection()
        self._notify(sql, rows)
        conn = self.driver_connection
        conn._local_infile = True
        try:
            self._cursor.execute(sql, (path,))
        finally:
            conn._local_infile = False
        result = getattr(self._cursor, "_result", None)
        warnings = getattr(result, "warning_count", None)
        if warnings is None:
            self._cursor.execute("SHOW COUNT(*) WARNINGS")
            warnings = self._cursor.fetchone()[0]
        return int(self._cursor.rowcount), int(warnings)

    def copy_data(self, sql: str, data: Any, rows: int) -> None:
        """Run ``COPY … FROM STDIN`` with ``data`` (bytes in the COPY's format, e.g. CSV
        Arrow wrote, or a list of such pieces, sent in order) as its input, in the open
        transaction; ``rows`` is for the listeners."""
        self._connection()
        self._notify(sql, rows)
        in_pipeline = self._pipeline is not None
        self._pipeline_off()  # COPY cannot run in pipeline mode
        with self._cursor.copy(sql) as copy:
            for piece in data if isinstance(data, list) else (data,):
                copy.write(piece)
        if in_pipeline:
            self._pipeline_on()
