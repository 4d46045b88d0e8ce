"""The test suite's scratch databases: dropped after a failing test, leftovers found at the end."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa

from tests import _scratch
from tests.conftest import mysql_admin_url, postgres_admin_url

SERVERS = [
    pytest.param(postgres_admin_url, id="postgres", marks=pytest.mark.postgres),
    pytest.param(mysql_admin_url, id="mysql", marks=pytest.mark.mysql),
]


def _exists(admin: str, name: str) -> bool:
    engine = sa.create_engine(admin, poolclass=sa.pool.NullPool)
    try:
        return name in sa.inspect(engine).get_schema_names()
    finally:
        engine.dispose()


def _name(url: str) -> str:
    u = sa.make_url(url)
    if u.get_backend_name() == "postgresql":
        return str(u.query["options"]).partition("search_path=")[2]
    return str(u.database)


@pytest.mark.parametrize("server", SERVERS)
def test_a_scratch_database_is_dropped_when_its_test_fails(server: Callable[[], str]) -> None:
    admin = server()
    with pytest.raises(AssertionError), _scratch.scratch_database(admin) as url:
        name = _name(url)
        assert _exists(admin, name)
        raise AssertionError("the test failed")
    assert name.startswith(f"bt_{_scratch.SESSION}_")
    assert not _exists(admin, name)


@pytest.mark.parametrize("server", SERVERS)
def test_leftovers_of_this_session_are_found_and_dropped_others_left_alone(
    server: Callable[[], str],
) -> None:
    admin = server()
    engine = sa.create_engine(admin, poolclass=sa.pool.NullPool)
    postgres = engine.dialect.name == "postgresql"
    ours, theirs = f"bt_{_scratch.SESSION}_leftover", "bt_000000_another_session"
    with engine.begin() as conn:
        for name in (ours, theirs):
            conn.exec_driver_sql(
                f'CREATE SCHEMA "{name}"' if postgres else f"CREATE DATABASE `{name}`"
            )
    try:
        with _scratch.scratch_database(admin):  # registers the server, as the fixtures do
            pass
        left = _scratch.drop_leftovers()
    finally:
        with engine.begin() as conn:
            for name in (ours, theirs):
                conn.exec_driver_sql(
                    f'DROP SCHEMA IF EXISTS "{name}"'
                    if postgres
                    else f"DROP DATABASE IF EXISTS `{name}`"
                )
        engine.dispose()

    assert [entry.split(" on ")[0] for entry in left] == [ours]
    assert not _exists(admin, ours)
