"""Scratch databases for tests: made fresh, dropped however the test ended, checked at the end.

A test that needs a private database on a PostgreSQL or MySQL/MariaDB server takes one from
:func:`scratch_database` (the ``postgres_url``/``mysql_url`` fixtures do). Each is named
``bt_<session>_<random>``, so :func:`drop_leftovers`, called when the session ends, finds what
this session left behind, and only that: other sessions may be running on the same server.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Iterator

import sqlalchemy as sa

__all__ = ["SESSION", "drop_leftovers", "scratch_database"]

SESSION = secrets.token_hex(3)
"""Part of every scratch database's name: this test session's."""
_servers: set[str] = set()  # the servers (admin URLs) scratch databases were made on
_made_by: dict[str, str] = {}  # scratch database -> the test that made it, for the report


@contextlib.contextmanager
def scratch_database(server: str | sa.URL) -> Iterator[str]:
    """A fresh private database on ``server``'s server, dropped afterwards however it ended.

    PostgreSQL: a schema, reached through ``search_path``; MySQL/MariaDB: a database. The URL
    yielded keeps ``server``'s driver and credentials.
    """
    url = sa.make_url(server)
    postgres = url.get_backend_name() == "postgresql"
    name = f"bt_{SESSION}_{secrets.token_hex(4)}"
    # Where to make and drop it from: the server's own default, not another scratch database.
    admin = url.difference_update_query(["options"]) if postgres else url._replace(database=None)
    _servers.add(admin.render_as_string(hide_password=False))
    _made_by[name] = os.environ.get("PYTEST_CURRENT_TEST", "").rpartition(" ")[0]
    engine = sa.create_engine(admin, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                f'CREATE SCHEMA "{name}"' if postgres else f"CREATE DATABASE `{name}`"
            )
        if postgres:
            scratch = url.update_query_dict({"options": f"-csearch_path={name}"})
        else:
            scratch = url.set(database=name)
        try:
            yield scratch.render_as_string(hide_password=False)
        finally:
            _drop(engine, name)
    finally:
        engine.dispose()


def _drop(engine: sa.Engine, name: str) -> None:
    """Drop a scratch database, retrying a few times (a server busy with a killed test's
    connections may refuse one); waiting on a lock a leaked connection holds is bounded, and
    what is still there is reported at the end of the session."""
    postgres = engine.dialect.name == "postgresql"
    attempts = 3
    for attempt in range(1, attempts + 1):
        try:
            with engine.begin() as conn:
                if postgres:
                    conn.exec_driver_sql("SET LOCAL lock_timeout = '30s'")
                    conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
                else:
                    conn.exec_driver_sql("SET SESSION lock_wait_timeout = 30")
                    conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
            return
        except sa.exc.DBAPIError:
            if attempt == attempts:
                raise
            time.sleep(attempt)


def _survivors(engine: sa.Engine) -> list[str]:
    """This session's scratch databases still on the server."""
    if engine.dialect.name == "postgresql":
        sql = "SELECT nspname FROM pg_namespace WHERE nspname LIKE :p"
    else:
        sql = "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE :p"
    with engine.connect() as conn:
        return sorted(conn.execute(sa.text(sql), {"p": f"bt\\_{SESSION}\\_%"}).scalars())


def drop_leftovers() -> list[str]:
    """Drop this session's scratch databases that are still there; returns which they were
    (or which server could not be checked, and why)."""
    left: list[str] = []
    for admin in sorted(_servers):
        engine = sa.create_engine(admin, poolclass=sa.pool.NullPool)
        shown = engine.url.render_as_string(hide_password=True)
        try:
            for name in _survivors(engine):
                made_by = _made_by.get(name)
                left.append(f"{name} on {shown}" + (f", made by {made_by}" if made_by else ""))
                _drop(engine, name)
        except sa.exc.DBAPIError as exc:
            left.append(f"{shown} could not be checked ({type(exc.orig).__name__}: {exc.orig})")
        finally:
            engine.dispose()
    return left
