"""The state tables' definitions (jobs, ledger, dead letters, runners, layout version), and
their creation: race-safe for any number of runners starting together.

They live beside the data so that a chunk's rows, its idempotency keys, its dead letters
and the job's new position commit in one transaction (the statements: ``_state``).
``batchline_schema`` records the layout version so a later release can migrate.
"""

from __future__ import annotations

import threading
import time

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from ._errors import ConfigError

__all__ = ["SCHEMA_VERSION", "StateTables"]

SCHEMA_VERSION = 1
_create_lock = threading.Lock()
#: Dead letters hold whole records and database messages: unbounded text. MySQL's TEXT stops
#: at 64 KiB, so there it is LONGTEXT (4 GiB; a statement's max_allowed_packet binds first).
_LONG_TEXT = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")


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
