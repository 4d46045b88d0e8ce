"""Portable test tables and a plain one-record-at-a-time reference loader.

The reference applies each record in its own transaction with SQLAlchemy Core, independent
of batchline's code, so differential tests compare batchline against the obvious way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite


def shop_metadata() -> sa.MetaData:
    md = sa.MetaData()
    sa.Table(
        "catalog",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("sku", sa.String(40), nullable=False, unique=True),
        sa.Column("name", sa.String(200), nullable=False),
    )
    sa.Table(
        "transactions",
        md,
        sa.Column("invoice_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("line_no", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("item_id", sa.Integer, nullable=False),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("unit_cost", sa.Numeric(12, 2), nullable=False),
        sa.CheckConstraint("quantity > 0", name="ck_tx_quantity"),
    )
    sa.Table(
        "inventory",
        md,
        sa.Column("item_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("quantity", sa.BigInteger, nullable=False, server_default="0"),
    )
    return md


def diff_metadata() -> sa.MetaData:
    """Three tables, one per kind of write, each with a constraint a bad record can break."""
    md = sa.MetaData()
    sa.Table(
        "parent",
        md,
        sa.Column("k", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("v", sa.Integer, nullable=False),
    )
    sa.Table(
        "child",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("k", sa.Integer, nullable=False),
        sa.Column("amount", sa.Integer, nullable=False),
        sa.CheckConstraint("amount < 1000", name="ck_child_amount"),
    )
    sa.Table(
        "totals",
        md,
        sa.Column("k", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("total", sa.BigInteger, nullable=False),
        sa.CheckConstraint("total < 1000000000", name="ck_totals_total"),
    )
    return md


def _dialect_insert(engine: sa.Engine, table: sa.Table) -> Any:
    name = engine.dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name in ("mysql", "mariadb"):
        return mysql.insert(table)
    return sqlite.insert(table)


def reference_load(
    engine: sa.Engine, md: sa.MetaData, records: Iterable[Mapping[str, Any]]
) -> list[int]:
    """Apply each diff record alone (upsert parent, insert child, add to totals).

    Returns the 1-based positions of the records that failed.
    """
    parent, child, totals = md.tables["parent"], md.tables["child"], md.tables["totals"]
    failed: list[int] = []
    mysqlish = engine.dialect.name in ("mysql", "mariadb")
    for pos, r in enumerate(records, start=1):
        try:
            with engine.begin() as conn:
                ins = _dialect_insert(engine, parent).values(k=r["k"], v=r["v"])
                if mysqlish:
                    ins = ins.on_duplicate_key_update(v=ins.inserted.v)
                else:
                    ins = ins.on_conflict_do_update(
                        index_elements=["k"], set_={"v": ins.excluded.v}
                    )
                conn.execute(ins)
                conn.execute(child.insert().values(id=r["id"], k=r["k"], amount=r["amount"]))
                ins2 = _dialect_insert(engine, totals).values(k=r["k"], total=r["inc"])
                if mysqlish:
                    ins2 = ins2.on_duplicate_key_update(total=totals.c.total + ins2.inserted.total)
                else:
                    ins2 = ins2.on_conflict_do_update(
                        index_elements=["k"], set_={"total": totals.c.total + ins2.excluded.total}
                    )
                conn.execute(ins2)
        except sa.exc.IntegrityError:
            failed.append(pos)
        except sa.exc.DBAPIError as exc:  # MySQL reports some violations as OperationalError
            if getattr(exc.orig, "args", [None])[0] in (1048, 3819, 4025, 1062, 1264):
                failed.append(pos)
            else:
                raise
    return failed


def table_rows(engine: sa.Engine, table: str, order: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        md = sa.MetaData()
        t = sa.Table(table, md, autoload_with=conn)
        rows = conn.execute(sa.select(t).order_by(sa.text(order))).all()
    return [tuple(row) for row in rows]


def dead_positions(engine: sa.Engine, job: str | None = None) -> list[int]:
    with engine.connect() as conn:
        sql = "SELECT position FROM batchline_dead_letters"
        params: dict[str, Any] = {}
        if job is not None:
            sql += " WHERE job = :job"
            params["job"] = job
        return sorted(int(r[0]) for r in conn.execute(sa.text(sql + " ORDER BY position"), params))


def rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    """The rows ``sql`` returns, on a connection of its own (nothing pooled stays open)."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql(sql)]
    finally:
        engine.dispose()


def execute(url: str, *statements: str) -> None:
    """Run ``statements`` in one transaction, on a connection of its own."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.exec_driver_sql(statement)
    finally:
        engine.dispose()


def kill_after_first_commit(url: str, script: str, *args: str, job: str = "k") -> int:
    """Run ``script`` (``python -c``, given ``url`` and ``args``) and SIGKILL it as soon as
    job ``job`` has committed a chunk; return the position it had reached (0: the process
    ended, or never committed, within a minute). Polls the job row every 5 ms."""
    import signal
    import subprocess
    import sys
    import time

    process = subprocess.Popen([sys.executable, "-c", script, url, *args])
    deadline = time.monotonic() + 60
    position = 0
    while time.monotonic() < deadline and process.poll() is None:
        try:
            found = rows(url, f"SELECT position FROM batchline_jobs WHERE name = '{job}'")
        except sa.exc.DBAPIError:
            found = []
        position = found[0][0] if found else 0
        if position > 0:
            break
        time.sleep(0.005)  # a poll step with a deadline
    process.send_signal(signal.SIGKILL)
    process.wait()
    return int(position)
