"""The idempotency ledger's claim: a try claims its keys before it writes, so a record that
then fails (its insert refused, its lookup missing) must give its key back, and the ledger
holds exactly the keys of the records that landed."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import sqlalchemy as sa

import batchline as bl
from batchline._database import Session
from batchline._state import StateStore
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


# -- PostgreSQL's claim without the lookup: one INSERT under a savepoint ------------------------
def _claimer(url: str) -> tuple[bl.Pipeline, StateStore]:
    pipeline = bl.Pipeline(url, writes=[bl.Insert("pay")])
    pipeline.state_tables.create(pipeline.engine)
    return pipeline, StateStore(pipeline.state_tables, pipeline.dialect)


def _claim_in_thread(session: Session, store: StateStore, keys: set[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def claim() -> None:
        try:
            session.begin()
            out["found"] = store.ledger_claim(session, "default", "b", keys)
            session.commit()
        except Exception as exc:  # reported to the test, which fails on it
            out["error"] = exc

    thread = threading.Thread(target=claim)
    thread.start()
    out["thread"] = thread
    return out


def _blocked(out: dict[str, Any], seconds: float = 0.3) -> bool:
    """Whether the claim is still waiting after ``seconds`` (for the other transaction)."""
    out["thread"].join(seconds)
    return bool(out["thread"].is_alive())


@pytest.mark.parametrize("first_commits", [True, False])
def test_a_claim_racing_an_uncommitted_one_finds_its_key_or_takes_it(
    postgres_url: str, first_commits: bool
) -> None:
    """Two transactions claim the same key at once (two jobs sharing the namespace), the
    second by the lookup-free INSERT: it waits for the first, then finds the key there if
    the first committed (a duplicate, not applied twice), or takes it if it rolled back."""
    pipeline, store = _claimer(postgres_url)
    one, two = (Session(pipeline.engine, pipeline.dialect) for _ in range(2))
    k1, k2, k3 = sorted(key_hash(("pay", i)) for i in range(3))
    try:
        one.begin()
        assert store.ledger_claim(one, "default", "a", {k1, k2}) == set()
        one.sync()
        other = StateStore(pipeline.state_tables, pipeline.dialect)
        assert other._fresh_keys  # its next claim inserts without the lookup
        out = _claim_in_thread(two, other, {k2, k3})
        assert _blocked(out)  # on k2, held by the open transaction
        if first_commits:
            one.commit()
        else:
            one.rollback()
        out["thread"].join(10)
        assert "error" not in out, out.get("error")
        assert out["found"] == ({k2} if first_commits else set())
        assert not other._fresh_keys if first_commits else other._fresh_keys
        assert _ledger(postgres_url) == ({k1, k2, k3} if first_commits else {k2, k3})
    finally:
        one.close()
        two.close()
        pipeline.close()


def test_a_resent_file_claims_by_lookup_after_its_first_duplicate(postgres_url: str) -> None:
    """A lookup-free claim that meets a key already there falls back to the lookup in the
    same transaction (nothing of the failed INSERT stays), and the run's next claims look up
    first; once a claim finds nothing there, the INSERT alone comes back."""
    _tables(postgres_url)
    pipeline, map_pay = _pipeline(postgres_url, chunk_size=10)
    seen: list[str] = []
    pipeline.statement_listeners.append(lambda sql, rows: seen.append(sql))
    records = [{"id": i, "amount": 1, "shop": "main"} for i in range(1, 31)]
    first = pipeline.run(records[:15], map_pay, job="first", idempotency_key=_key)
    assert (first.items_processed, first.duplicates_skipped) == (15, 0)
    assert sum("WITH present" in s for s in seen) == 0  # no duplicates: never looked up
    seen.clear()
    # chunks: ids 1-10 (all there), 11-20 (half), 21-30 (none), 1-10 again (all there)
    again = pipeline.run([*records, *records[:10]], map_pay, job="again", idempotency_key=_key)
    assert (again.items_processed, again.duplicates_skipped, again.items_failed) == (15, 25, 0)
    claims = [s for s in seen if "batchline_ledger" in s and s.startswith(("INSERT", "WITH"))]
    # INSERT fails → lookup; lookup (dups) → lookup (none: fresh again) → INSERT fails → lookup
    assert [c.split()[0] for c in claims] == ["INSERT", "WITH", "WITH", "WITH", "INSERT", "WITH"]
    assert _ledger(postgres_url) == {key_hash(("pay", i)) for i in range(1, 31)}
    pipeline.close()
