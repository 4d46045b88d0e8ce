"""Shared fixtures: a fresh, private database per test on SQLite, PostgreSQL and MariaDB.

Servers come from ``BATCHLINE_TEST_POSTGRES`` and ``BATCHLINE_TEST_MYSQL``. When a variable
is unset, the usual local server is tried (127.0.0.1, trust auth / root without password);
when nothing answers the test is skipped, saying why. With ``BATCHLINE_REQUIRE_DATABASES=1``
(set by ``.ci/run``) a missing server fails the test instead, so CI cannot pass by skipping.

Each test gets its own PostgreSQL schema (through ``search_path``) or MariaDB database, so
tests never see each other's tables. Every such scratch database is made by
``tests._scratch.scratch_database``, which drops it when its test ends, failed or not; at the
end of the session any of this session's that survived is reported (the run fails) and dropped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests._scratch import drop_leftovers, scratch_database

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


_LEFT: list[str] = []  # what the session-end check found, for the terminal summary


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if a scratch database of this session outlived its test (and drop it)."""
    _LEFT.extend(drop_leftovers())
    if _LEFT:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _LEFT:
        terminalreporter.section("scratch databases", sep="=", red=True, bold=True)
        terminalreporter.line("outlived their tests (dropped now, the run fails):", red=True)
        for entry in _LEFT:
            terminalreporter.line(f"  {entry}", red=True)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with scratch_database(_with_driver(postgres_admin_url(), "psycopg")) as url:
        yield url


@pytest.fixture
def mysql_url() -> Iterator[str]:
    with scratch_database(_with_driver(mysql_admin_url(), "pymysql")) as url:
        yield url


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
