"""The dead-letter API: list, export (JSON Lines), replay and purge, on every backend.

A dead letter is a record that did not land, with where it was and why. Replaying it after
the cause is fixed lands it and removes its letter in one transaction; one that fails again
keeps its letter (same id) with the attempt count raised; payloads keep every value.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import batchline as bl

CATALOG = bl.Lookup("catalog", key="sku", returns="id")  # no create: an unknown SKU fails


def _tables(url: str) -> None:
    md = sa.MetaData()
    catalog = sa.Table(
        "catalog",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("sku", sa.String(40), nullable=False, unique=True),
    )
    sa.Table(
        "orders",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("item_id", sa.Integer, nullable=False),
        sa.Column("qty", sa.Integer, nullable=False),
        sa.CheckConstraint("qty > 0", name="ck_orders_qty"),
    )
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    md.create_all(engine)
    with engine.begin() as conn:
        conn.execute(catalog.insert(), [{"sku": "A"}, {"sku": "B"}])
    engine.dispose()


def map_order(r: dict[str, Any], out: bl.Out) -> None:
    out.insert(
        "orders", {"id": r["id"], "item_id": CATALOG.ref(sku=r["sku"]), "qty": int(r["qty"])}
    )


def map_order_fixed(r: dict[str, Any], out: bl.Out) -> None:
    """The map after its bug is fixed: a quantity it cannot read counts as 1."""
    qty = int(r["qty"]) if str(r["qty"]).lstrip("-").isdigit() else 1
    out.insert("orders", {"id": r["id"], "item_id": CATALOG.ref(sku=r["sku"]), "qty": qty})


# Bad on purpose, by position: 5 and 9 name unknown SKUs (lookup), 12 has quantity 0 (write),
# 15 a quantity the map cannot read (map), 20 is not JSON (read).
BAD = {5: "lookup", 9: "lookup", 12: "write", 15: "map", 20: "read"}


def _source(path: Path) -> Path:
    lines = []
    for i in range(1, 31):
        rec: dict[str, Any] = {"id": i, "sku": "AB"[i % 2], "qty": i % 4 + 1}
        if i == 5:
            rec["sku"] = "NEW-1"
        elif i == 9:
            rec["sku"] = "NEW-2"
        elif i == 12:
            rec["qty"] = 0
        elif i == 15:
            rec["qty"] = "x"
        lines.append(json.dumps(rec) if i != 20 else '{"id": 20, "sku": "A", ')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def loaded(db_url: str, tmp_path: Path) -> Iterator[tuple[str, bl.Pipeline, bl.DeadLetters]]:
    _tables(db_url)
    pipeline = bl.Pipeline(db_url, writes=[bl.Insert("orders")], lookups=[CATALOG], chunk_size=8)
    result = pipeline.run(bl.read(_source(tmp_path / "orders.jsonl")), map_order, job="load")
    assert (result.items_processed, result.items_failed) == (25, 5)
    with bl.DeadLetters(db_url) as letters:
        yield db_url, pipeline, letters


def _orders(url: str) -> list[int]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        ids = [int(r[0]) for r in conn.execute(sa.text("SELECT id FROM orders ORDER BY id"))]
    engine.dispose()
    return ids


def test_list_get_iter_and_jobs_describe_each_failed_record(
    loaded: tuple[str, bl.Pipeline, bl.DeadLetters],
) -> None:
    _, _, letters = loaded
    found = letters.list("load")
    assert {d.position: d.stage for d in found} == BAD
    by_pos = {d.position: d for d in found}
    assert by_pos[5].error_class == "LookupMissing" and "NEW-1" in by_pos[5].message
    assert by_pos[12].error_class in ("IntegrityError", "CheckViolation", "OperationalError")
    assert by_pos[15].error_class == "ValueError"
    assert by_pos[12].record == {"id": 12, "sku": "A", "qty": 0}
    assert by_pos[20].record == '{"id": 20, "sku": "A", '  # the raw line, as read
    assert {d.attempts for d in found} == {1} and {d.job for d in found} == {"load"}
    assert {d.line for d in found} == set(BAD)  # one record per line in JSON Lines
    assert letters.get(by_pos[9].id) == by_pos[9]
    assert letters.get(10**9) is None
    assert [d.id for d in letters.iter("load", page=2)] == sorted(d.id for d in found)
    assert len(letters.list("load", limit=2)) == 2
    assert letters.list("no-such-job") == []
    job = letters.job("load")
    assert job is not None
    assert (job.position, job.processed, job.failed, job.status) == (30, 25, 5, "partial_success")
    assert [j.name for j in letters.jobs()] == ["load"]


def test_export_writes_one_json_line_per_dead_letter(
    loaded: tuple[str, bl.Pipeline, bl.DeadLetters],
) -> None:
    _, _, letters = loaded
    out = io.StringIO()
    assert letters.export(out, "load") == 5
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["position"] for r in rows] == sorted(BAD)
    assert set(rows[0]) == {
        "id",
        "job",
        "position",
        "line",
        "stage",
        "error_class",
        "message",
        "record",
        "payload_mode",
        "redacted",
        "attempts",
        "created_at",
    }
    assert rows[2]["record"] == {"id": 12, "sku": "A", "qty": 0}
    assert (rows[2]["payload_mode"], rows[2]["redacted"]) == ("full", [])
    assert letters.export(io.StringIO(), "other") == 0


def test_replay_after_fixing_the_cause_lands_the_rows_and_removes_exactly_their_letters(
    loaded: tuple[str, bl.Pipeline, bl.DeadLetters],
) -> None:
    url, pipeline, letters = loaded
    before = {d.position: d for d in letters.list("load")}
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:  # fix one lookup's cause: the SKU now exists
        conn.execute(sa.text("INSERT INTO catalog (sku) VALUES ('NEW-1')"))
    engine.dispose()

    # ...and the map's bug (record 15); record 9's SKU and record 12's quantity stay bad.
    result = pipeline.dead_letters().replay(pipeline, map_order_fixed, job="load")
    assert (result.items_processed, result.items_failed) == (2, 2)
    assert result.status == "partial_success"
    assert _orders(url) == sorted(set(range(1, 31)) - {9, 12, 20})

    after = {d.position: d for d in letters.list("load")}
    assert set(after) == {9, 12, 20}
    for pos in (9, 12):  # failed again: the same letter, one more attempt, the new reason
        assert after[pos].id == before[pos].id
        assert after[pos].attempts == 2
        assert after[pos].stage == before[pos].stage
    assert after[20] == before[20]  # unreadable rows are not replayed unless asked

    # Replaying what is left changes nothing but the attempt counts: nothing lands twice.
    again = pipeline.dead_letters().replay(pipeline, map_order_fixed, job="load")
    assert (again.items_processed, again.items_failed) == (0, 2)
    assert {d.position: d.attempts for d in letters.list("load")} == {9: 3, 12: 3, 20: 1}
    assert _orders(url) == sorted(set(range(1, 31)) - {9, 12, 20})


def test_replay_lands_rows_and_removes_letters_in_one_transaction(
    loaded: tuple[str, bl.Pipeline, bl.DeadLetters],
) -> None:
    url, pipeline, letters = loaded
    before = letters.list("load")
    deleting = False

    def fail_the_commit_that_removes_letters(sql: str, rows: int) -> None:
        nonlocal deleting
        if sql.startswith("DELETE") and "dead_letters" in sql:
            deleting = True
        elif sql == "COMMIT" and deleting:
            raise RuntimeError("the commit of the replay did not happen")

    pipeline.statement_listeners.append(fail_the_commit_that_removes_letters)
    with pytest.raises(bl.BatchlineError, match="did not happen"):
        pipeline.dead_letters().replay(pipeline, map_order_fixed, job="load")
    pipeline.statement_listeners.remove(fail_the_commit_that_removes_letters)
    assert deleting
    # The chunk is one transaction, isolation included (bisection runs under savepoints):
    # its commit failed, so no row landed and no letter left or changed.
    assert _orders(url) == sorted(set(range(1, 31)) - set(BAD))
    now = {d.position: d for d in letters.list("load")}
    then = {d.position: d for d in before}
    assert set(now) == set(BAD)
    assert all(now[p] == then[p] for p in BAD)

    replayed = pipeline.dead_letters().replay(pipeline, map_order_fixed, job="load")
    assert replayed.items_processed == 1  # record 15; the SKUs and quantity 0 are still bad
    assert {d.position for d in letters.list("load")} == {5, 9, 12, 20}


def test_replayed_record_that_fails_again_keeps_its_letter_with_attempts_raised(
    loaded: tuple[str, bl.Pipeline, bl.DeadLetters],
) -> None:
    url, pipeline, letters = loaded
    before = {d.id: d for d in letters.list("load")}
    result = pipeline.dead_letters().replay(pipeline, map_order, job="load")  # nothing fixed
    assert (result.items_processed, result.items_failed, result.status) == (0, 4, "failed")
    after = {d.id: d for d in letters.list("load")}
    assert set(after) == set(before)  # the same letters, none added, none lost
    for dl_id, letter in after.items():
        expected = before[dl_id].attempts + (letter.stage != "read")
        assert letter.attempts == expected
        assert (letter.position, letter.record) == (before[dl_id].position, before[dl_id].record)
    assert _orders(url) == sorted(set(range(1, 31)) - set(BAD))


def test_payload_values_json_cannot_hold_are_stored_as_text(db_url: str) -> None:
    _tables(db_url)

    class Odd:
        def __str__(self) -> str:
            return "odd-value"

    record = {
        "id": 1,
        "price": Decimal("12.50"),
        "day": date(2026, 11, 28),
        "at": datetime(2026, 11, 28, 10, 30),
        "raw": b"\x00\xff",
        "tags": {"x"},
        "odd": Odd(),
        "none": None,
    }

    def reject(r: dict[str, Any], out: bl.Out) -> None:
        raise ValueError("rejected on purpose")

    pipeline = bl.Pipeline(db_url, writes=[bl.Insert("orders")])
    result = pipeline.run([record], reject, job="odd")
    assert result.items_failed == 1
    with bl.DeadLetters(db_url) as letters:
        (letter,) = letters.list("odd")
    assert letter.record == {
        "id": 1,
        "price": "12.50",
        "day": "2026-11-28",
        "at": "2026-11-28T10:30:00",
        "raw": "00ff",
        "tags": ["x"],
        "odd": "odd-value",
        "none": None,
    }
    assert letter.stage == "map" and "rejected on purpose" in letter.message


def test_purge_deletes_one_jobs_letters_or_all(
    loaded: tuple[str, bl.Pipeline, bl.DeadLetters], tmp_path: Path
) -> None:
    url, pipeline, letters = loaded
    pipeline.run(bl.read(_source(tmp_path / "again.jsonl")), map_order, job="second")
    assert len(letters.list("second")) == 30  # the good ones are taken now, the bad still bad
    assert letters.purge("load") == 5
    assert letters.list("load") == []
    assert len(letters.list("second")) == 30
    assert letters.purge() == 30
    assert letters.list() == []
    assert letters.purge() == 0
    assert _orders(url) == sorted(set(range(1, 31)) - set(BAD))  # data untouched
