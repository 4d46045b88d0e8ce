"""The state tables are created race-free: runners starting together on a new database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from batchline._errors import ConfigError
from batchline._state_tables import SCHEMA_VERSION, StateTables

SRC = Path(__file__).resolve().parent.parent / "src"
CREATE = (
    "import sys, sqlalchemy as sa, batchline._state_tables as s; "
    "e = sa.create_engine(sys.argv[1]); s.StateTables().create(e); e.dispose()"
)


def test_processes_creating_the_state_tables_together_all_succeed(
    db_url: str, engine: sa.Engine
) -> None:
    # Each table another process creates between the check and the CREATE is a collision:
    # with five tables, three tries were not always enough (3 failures in 48 on MariaDB).
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    for _ in range(3):
        with engine.begin() as conn:
            for table in sa.inspect(conn).get_table_names():
                if table.startswith("batchline_"):
                    conn.exec_driver_sql(f"DROP TABLE {table}")
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", CREATE, db_url], stderr=subprocess.PIPE, text=True, env=env
            )
            for _ in range(4)
        ]
        errors = [p.communicate(timeout=120)[1] for p in procs]
        assert [p.returncode for p in procs] == [0] * 4, errors
    assert "batchline_runners" in sa.inspect(engine).get_table_names()


def test_ready_says_whether_a_run_can_skip_creating_and_refuses_a_newer_layout(
    db_url: str, engine: sa.Engine
) -> None:
    # A run's start checks the tables with one catalog query (``ready``) and creates only
    # when something is missing.
    tables = StateTables(prefix="ready_")
    with engine.connect() as conn:
        assert not tables.ready(conn)
    tables.create(engine)
    with engine.connect() as conn:
        assert tables.ready(conn)
        assert not conn.in_transaction()  # nothing left open (SQLite would keep its lock)
    with engine.begin() as conn:
        conn.execute(tables.meta.update().values(version=SCHEMA_VERSION + 1))
    with engine.connect() as conn, pytest.raises(ConfigError, match="newer batchline"):
        tables.ready(conn)
