"""Shared fixtures: a fresh, private database per test on SQLite, PostgreSQL and MariaDB.

Servers come from ``BATCHLINE_TEST_POSTGRES`` and ``BATCHLINE_TEST_MYSQL``. When a variable
is unset, the usual local server is tried (127.0.0.1, trust auth / root without password);
when nothing answers the test is skipped, saying why. With ``BATCHLINE_REQUIRE_DATABASES=1``
(set by ``.ci/run``) a missing server fails the test instead, so CI cannot pass by skipping.

Each test gets its own PostgreSQL schema (through ``search_path``) or MariaDB database, so
tests never see each other's tables.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest
import sqlalchemy as sa

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
MYSQL_DEFAULT = "mysql+pymysql://root@127.0.0.1:3306/test"


def _required() -> bool:
    return os.environ.get(
        "BATCHLINE_TEST_REQUIRE_DATABASES", os.environ.get("BATCHLINE_REQUIRE_DATABASES", "")
    ) not in ("", "0")


@cache
def _server(env: str, default: str) -> tuple[str | None, str]:
    """(url, reason): the server URL if it answers, else None and why."""
    url = os.environ.get(env) or default
    connect_args = {"connect_timeout": 3}
    try:
        engine = sa.create_engine(url, connect_args=connect_args, poolclass=sa.pool.NullPool)
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        engine.dispose()
    except Exception as exc:
        shown = sa.make_url(url).render_as_string(hide_password=True)
        return None, f"no server at {shown} ({type(exc).__name__}); set {env} to run these tests"
    return url, ""


def _need(env: str, default: str) -> str:
    url, reason = _server(env, default)
    if url is None:
        if _required():
            pytest.fail(f"database required by BATCHLINE_REQUIRE_DATABASES: {reason}")
        pytest.skip(reason)
    return url


def postgres_admin_url() -> str:
    return _need("BATCHLINE_TEST_POSTGRES", PG_DEFAULT)


def mysql_admin_url() -> str:
    return _need("BATCHLINE_TEST_MYSQL", MYSQL_DEFAULT)


def _with_driver(url: str, driver: str) -> sa.URL:
    u = sa.make_url(url)
    backend = u.get_backend_name()
    return u.set(drivername=f"{backend}+{driver}")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'test.db'}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    admin = _with_driver(postgres_admin_url(), "psycopg")
    schema = f"bt_{secrets.token_hex(5)}"
    engine = sa.create_engine(admin, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = admin.update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        engine.dispose()


@pytest.fixture
def mysql_url() -> Iterator[str]:
    admin = _with_driver(mysql_admin_url(), "pymysql")
    database = f"bt_{secrets.token_hex(5)}"
    engine = sa.create_engine(admin, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE `{database}`")
    try:
        yield admin.set(database=database).render_as_string(hide_password=False)
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{database}`")
        engine.dispose()


BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    pytest.param("mysql", id="mysql", marks=pytest.mark.mysql),
]


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest) -> str:
    """A private database URL on each backend in turn."""
    name = {"sqlite": "sqlite_url", "postgres": "postgres_url", "mysql": "mysql_url"}[request.param]
    return str(request.getfixturevalue(name))


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    """An engine on ``db_url`` for setting up and checking tables."""
    eng = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    yield eng
    eng.dispose()
