"""The idempotency ledger's claim: a try claims its keys before it writes, so a record that
then fails (its insert refused, its lookup missing) must give its key back, and the ledger
holds exactly the keys of the records that landed."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

import batchline as bl
from batchline._state_rows import key_hash


def _tables(url: str) -> None:
    md = sa.MetaData()
    sa.Table(
        "pay",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("amount", sa.Integer, sa.CheckConstraint("amount >= 0"), nullable=False),
        sa.Column("shop_id", sa.Integer),
    )
    sa.Table(
        "shop",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("code", sa.String(20), nullable=False, unique=True),
    )
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    md.create_all(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO shop (code) VALUES ('main')")
    engine.dispose()


def _ledger(url: str) -> set[str]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT key_hash FROM batchline_ledger").all()
    engine.dispose()
    return {r[0] for r in rows}


def _pipeline(url: str, **kwargs: Any) -> tuple[bl.Pipeline, Any]:
    shop = bl.Lookup("shop", key="code", returns="id", create=False)

    def map_pay(r: dict[str, Any], out: bl.Out) -> None:
        out.insert(
            "pay",
            {"id": r["id"], "amount": r["amount"], "shop_id": shop.ref(code=r["shop"])},
        )

    return bl.Pipeline(url, writes=[bl.Insert("pay")], lookups=[shop], **kwargs), map_pay


def _key(r: dict[str, Any]) -> Any:
    return ("pay", r["id"])


def test_records_that_fail_after_claiming_their_keys_give_them_back(db_url: str) -> None:
    _tables(db_url)
    good = [{"id": i, "amount": 10, "shop": "main"} for i in range(1, 41)]
    records = [*good]
    records[7] = {"id": 8, "amount": -1, "shop": "main"}  # refused by the CHECK
    records[20] = {"id": 21, "amount": 5, "shop": "nowhere"}  # its lookup finds no row
    records[30] = {"id": 5, "amount": 3, "shop": "main"}  # key of record 5: a duplicate
    pipeline, map_pay = _pipeline(db_url, chunk_size=16)
    first = pipeline.run(records, map_pay, job="first", idempotency_key=_key)
    assert (first.items_processed, first.items_failed, first.duplicates_skipped) == (37, 2, 1)
    landed = {r["id"] for i, r in enumerate(records) if i not in (7, 20, 30)}
    assert _ledger(db_url) == {key_hash(("pay", i)) for i in landed}

    # The failed records, corrected, land under the same keys: their claims were given back.
    again = [{"id": 8, "amount": 1, "shop": "main"}, {"id": 21, "amount": 5, "shop": "main"}]
    second = pipeline.run([*again, records[0]], map_pay, job="second", idempotency_key=_key)
    assert (second.items_processed, second.duplicates_skipped) == (2, 1)
    assert _ledger(db_url) == {key_hash(("pay", i)) for i in range(1, 41) if i != 31}
    pipeline.close()
