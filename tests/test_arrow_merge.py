"""Upserts and increments of Arrow data in bulk (``batchline._arrow_merge``): staged, merged
by the database, and leaving exactly what the row path leaves, on all three databases.

Each test loads the same data twice: as Arrow (the bulk path) and as a list of dicts (the
row path, the reference), into two tables of the same definition holding the same rows
already, and compares the tables read back, the dead letters, the job row and the Result
(``left_by``): keys repeated inside a chunk and across chunks, keys that differ only in
case (one key under MariaDB's ``_ci`` collation), NULLs, decimals.
"""

from __future__ import annotations

import random
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import batchline as bl
from batchline import _run_loop
from tests._schemas import execute, kill_after_first_commit, rows
from tests.test_arrow_write import Sent, eval_named, left_by, same

WriteFor = Any  # (table name) -> the write


@pytest.fixture
def url(db_url: str) -> str:
    """Each database in turn (``conftest.db_url``)."""
    return db_url


def merge_both(
    url: str,
    ddl: str,
    data: pa.Table,
    write_for: WriteFor,
    monkeypatch: pytest.MonkeyPatch,
    *,
    chunk_size: int = 7,
    before: str = "",
) -> tuple[dict[str, Any], dict[str, Any], Sent]:
    """Load ``data`` as Arrow into ``bulk`` and as dicts into ``rowwise`` (both made with
    ``ddl``, then given the rows ``before``: ``VALUES …`` text), with the write
    ``write_for(table)``; return what each left, and what the bulk path sent."""
    statements = [ddl.format("bulk"), ddl.format("rowwise")]
    if before:
        statements += [f"INSERT INTO bulk {before}", f"INSERT INTO rowwise {before}"]
    execute(url, *statements)
    sent = Sent(monkeypatch)
    out = []
    for table, source in (("bulk", data), ("rowwise", data.to_pylist())):
        pipeline = bl.Pipeline(url, writes=[write_for(table)], chunk_size=chunk_size)
        result = pipeline.run(source, job=table)
        out.append(left_by(url, table, result))
    bulk, rowwise = (eval_named(o, name) for o, name in zip(out, ("bulk", "rowwise")))
    return bulk, rowwise, sent


def _decimal(url: str) -> str:
    return "DECIMAL_TEXT(20, 4)" if url.startswith("sqlite") else "DECIMAL(20,4)"


def _keys(n: int, seed: int) -> list[str]:
    """``n`` keys from a few, so most repeat in a chunk of 7 and across chunks; on MariaDB
    ``k1`` and ``K1`` are one key (``_ci`` collation), elsewhere two."""
    rng = random.Random(seed)
    return [rng.choice(["k1", "k2", "k3", "K1", "k4", "k5", "k10"]) for _ in range(n)]


def test_an_upsert_in_bulk_leaves_what_the_row_path_leaves(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = 60
    rng = random.Random(5)
    data = pa.table(
        {
            "id": _keys(n, 1),
            "qty": pa.array([rng.randint(-5, 100) for _ in range(n)], pa.int64()),
            "price": pa.array(
                [Decimal(rng.randint(0, 10**8)) / 10_000 if i % 6 else None for i in range(n)],
                pa.decimal128(20, 4),
            ),
            "score": [rng.random() * 10 ** rng.randint(-5, 5) for _ in range(n)],
            "note": [f'note {i}, "q"' if i % 5 else None for i in range(n)],
        }
    )
    ddl = (
        "CREATE TABLE {} (id VARCHAR(20) PRIMARY KEY, qty BIGINT, price "
        + _decimal(url)
        + ", score DOUBLE PRECISION, note TEXT)"
    )
    before = "(id, qty, note) VALUES ('k1', 7, 'old'), ('k5', 0, NULL)"
    bulk, rowwise, sent = merge_both(
        url, ddl, data, lambda t: bl.Upsert(t, key="id"), monkeypatch, before=before
    )
    assert sent.bulk_rows == n  # every chunk in bulk
    assert same(bulk, rowwise)
    assert bulk["letters"] == [] and bulk["job"] == [(n, n, 0, 0, 9, "success")]
    # the last row of each key won (on MariaDB k1 and K1 are one key)
    fold = str.lower if url.startswith("mysql") else str
    last = {fold(r["id"]): r["qty"] for r in data.to_pylist()}
    assert {fold(r[0]): r[1] for r in bulk["table"]} == last


@pytest.mark.parametrize(
    ("update", "want"),
    [
        (["qty"], [(1, 4, "a"), (2, 6, "b"), (3, 5, "e"), (4, 7, "old")]),
        ([], [(1, 1, "a"), (2, 2, "b"), (3, 5, "e"), (4, 0, "old")]),
    ],
    ids=["update-qty", "insert-only"],
)
def test_an_upsert_of_some_columns_keeps_the_first_rows_others(
    url: str, monkeypatch: pytest.MonkeyPatch, update: list[str], want: list[Any]
) -> None:
    # a new key's row is its first record's, then each later record's updated columns
    data = pa.table({"id": [1, 2, 1, 1, 3, 2, 4], "qty": [1, 2, 3, 4, 5, 6, 7],
                     "note": ["a", "b", "c", None, "e", "f", "g"]})  # fmt: skip
    bulk, rowwise, sent = merge_both(
        url, "CREATE TABLE {} (id BIGINT PRIMARY KEY, qty BIGINT, note TEXT)", data,
        lambda t: bl.Upsert(t, key="id", update=update), monkeypatch,
        before="VALUES (4, 0, 'old')",
    )  # fmt: skip
    assert sent.bulk_rows == len(data)
    assert same(bulk, rowwise)
    assert bulk["table"] == want


def test_an_increment_in_bulk_leaves_what_the_row_path_leaves(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = 80
    rng = random.Random(7)
    decimals = not url.startswith("sqlite")  # (SQLite adds decimals as floats: refused there)
    columns: dict[str, Any] = {
        "id": _keys(n, 2),
        "qty": pa.array([rng.randint(-(2**40), 2**40) for _ in range(n)], pa.int64()),
        "name": [f"first {i}" if i % 4 else None for i in range(n)],  # create-only
    }
    if decimals:
        columns["amount"] = pa.array(
            [Decimal(rng.randint(-(10**12), 10**12)) / 10_000 for _ in range(n)],
            pa.decimal128(20, 4),
        )
    data = pa.table(columns)
    ddl = "CREATE TABLE {} (id VARCHAR(20) PRIMARY KEY, qty BIGINT, name TEXT"
    ddl += f", amount {_decimal(url)})" if decimals else ")"
    add = ["qty", "amount"] if decimals else ["qty"]
    before = "(id, qty, name) VALUES ('k2', 1000, 'kept'), ('k4', NULL, NULL)"
    bulk, rowwise, sent = merge_both(
        url, ddl, data, lambda t: bl.Increment(t, key="id", columns=add), monkeypatch,
        before=before,
    )  # fmt: skip
    assert sent.bulk_rows == n
    assert same(bulk, rowwise)
    assert bulk["letters"] == []
    totals: dict[str, int] = {}
    for r in data.to_pylist():
        k = r["id"].lower() if url.startswith("mysql") else r["id"]
        totals[k] = totals.get(k, 0) + r["qty"]
    got = {(r[0].lower() if url.startswith("mysql") else r[0]): r[1] for r in bulk["table"]}
    assert got == {k: v + (1000 if k == "k2" else 0) for k, v in totals.items()} | {"k4": None}


@pytest.mark.parametrize("key", ["BIGINT", "VARCHAR(20)"])
def test_an_increment_of_only_the_key_and_amount_is_grouped_as_the_row_path_sums(
    url: str, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    ids: list[Any] = [3, 1, 3, 2, 1, 3] * 5
    if key != "BIGINT":  # (k1 and K1: one key on MariaDB, two elsewhere)
        ids = [{1: "k1", 2: "K1", 3: "k3"}[i] for i in ids]
    data = pa.table({"id": ids, "qty": list(range(30))})
    before = "VALUES (2, 100)" if key == "BIGINT" else "VALUES ('K1', 100)"
    bulk, rowwise, sent = merge_both(
        url, "CREATE TABLE {} (id " + key + " PRIMARY KEY, qty BIGINT NOT NULL)", data,
        lambda t: bl.Increment(t, key="id", columns="qty"), monkeypatch, chunk_size=12,
        before=before,
    )  # fmt: skip
    assert sent.bulk_rows == 30 and same(bulk, rowwise)
    if key == "BIGINT":
        assert bulk["table"] == [(1, 145), (2, 175), (3, 215)]
    elif url.startswith("mysql"):
        assert bulk["table"] == [("K1", 320), ("k3", 215)]
    else:
        assert sorted(bulk["table"]) == [("K1", 175), ("k1", 145), ("k3", 215)]


def test_float_increments_are_summed_in_the_records_order(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # floats added in another order give another double; PostgreSQL sums in the records'
    # order in bulk, the others send such chunks as rows
    rng = random.Random(11)
    n = 200
    data = pa.table(
        {
            "id": [rng.randint(1, 3) for _ in range(n)],
            "x": [rng.uniform(-1, 1) * 10 ** rng.randint(-8, 8) for _ in range(n)],
            "tag": [f"t{i}" for i in range(n)],
        }
    )
    bulk, rowwise, sent = merge_both(
        url, "CREATE TABLE {} (id BIGINT PRIMARY KEY, x DOUBLE PRECISION, tag TEXT)", data,
        lambda t: bl.Increment(t, key="id", columns="x"), monkeypatch, chunk_size=100,
        before="VALUES (1, 0.1, 'old')",
    )  # fmt: skip
    assert same(bulk, rowwise)
    assert sent.bulk_rows == (n if url.startswith("postgresql") else 0)


@pytest.mark.parametrize("mode", ["increment", "upsert"])
def test_null_keys_and_amounts_go_the_row_path_and_are_dead_lettered_there(
    url: str, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    data = pa.table({"id": [1, 2, None, 1, 3, 1, 2, 5, 6], "qty": [1, 2, 3, 4, None, 6, 7, 8, 9]})

    def write(t: str) -> bl.Write:
        if mode == "increment":
            return bl.Increment(t, key="id", columns="qty")
        return bl.Upsert(t, key="id")

    bulk, rowwise, sent = merge_both(
        url, "CREATE TABLE {} (id BIGINT PRIMARY KEY, qty BIGINT)", data, write, monkeypatch,
        chunk_size=3,
    )  # fmt: skip
    assert same(bulk, rowwise)
    # chunk 1 (a NULL key) as rows; chunk 2 (a NULL amount) as rows for an increment,
    # whose record it fails, in bulk for an upsert, which stores the NULL; chunk 3 in bulk
    assert sent.bulk_rows == (3 if mode == "increment" else 6)
    letters = [letter[:3] for letter in bulk["letters"]]
    assert letters == ([(3, 3, "map"), (5, 5, "map")] if mode == "increment" else [(3, 3, "map")])


def test_a_chunk_whose_upsert_the_database_refuses_is_redone_as_rows(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # key 1's second row breaks the CHECK, its third is fine: merged to the last row it
    # would pass, but the row path's rounds meet the second; so must the bulk path, which
    # is refused and redone as rows (the second record dead-lettered)
    data = pa.table({"id": [1, 2, 1, 1, 3, 4], "qty": [5, 6, -1, 7, 8, 9]})
    bulk, rowwise, sent = merge_both(
        url, "CREATE TABLE {} (id BIGINT PRIMARY KEY, qty BIGINT CHECK (qty >= 0))", data,
        lambda t: bl.Upsert(t, key="id"), monkeypatch, chunk_size=6,
    )  # fmt: skip
    # (tried once in bulk: on PostgreSQL the refusal comes with the pipelined COMMIT)
    assert sent.attempts == 1
    assert same(bulk, rowwise)
    assert [letter[:3] for letter in bulk["letters"]] == [(3, 3, "write")]
    assert bulk["table"] == [(1, 7), (2, 6), (3, 8), (4, 9)]


def test_an_increment_total_the_column_cannot_hold_is_redone_as_rows(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # each amount fits; key 1's total in the chunk does not fit a SMALLINT: refused in bulk,
    # then the row path's aggregate fails the same way and isolates the records
    data = pa.table({"id": [1, 1, 2], "qty": [30_000, 30_000, 1]})
    bulk, rowwise, sent = merge_both(
        url, "CREATE TABLE {} (id BIGINT PRIMARY KEY, qty SMALLINT)", data,
        lambda t: bl.Increment(t, key="id", columns="qty"), monkeypatch, chunk_size=3,
    )  # fmt: skip
    assert sent.attempts == 1
    bulk["result"].pop("isolation_flushes")
    rowwise["result"].pop("isolation_flushes")
    assert same(bulk, rowwise)


def test_a_csv_upsert_and_increment_load_in_bulk_leave_what_rows_leave(
    tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # batchline load f.csv --upsert/--increment --key sku: the CSV read as Arrow blocks,
    # converted, staged and merged; against the same load with the Arrow path off. MariaDB
    # keys on text: VARCHAR(n) sized from the data (the table is made by the load)
    rng = random.Random(3)
    lines = ["sku,id,qty,price,name"]
    for i in range(3_000):
        sku = f"SKU-{rng.randint(1, 400)}"
        qty = "x" if i == 1_234 else str(rng.randint(-50, 50))  # one misfit: a dead letter
        price = f"{rng.randint(0, 99_999)}.{rng.randint(0, 99):02d}"
        lines.append(f"{sku},{i},{qty},{price},name {i}")
    path = tmp_path / "stock.csv"
    path.write_text("\n".join(lines) + "\n")
    types = {"price": "float"} if url.startswith("sqlite") else {}
    for mode, options in (
        ("upsert", {"upsert": "sku"}),
        ("increment", {"increment": "sku", "columns": ["qty"]}),
    ):
        sent = Sent(monkeypatch)
        out = []
        with monkeypatch.context() as patch:
            for table in (f"{mode}_bulk", f"{mode}_rows"):
                if table.endswith("_rows"):
                    patch.setattr(_run_loop, "arrow_writer", lambda *a: None)
                result = bl.load(
                    str(path), url, table=table, job=table, chunk_size=500, types=types,
                    **options,
                )  # fmt: skip
                out.append(eval_named(left_by(url, table, result, chunks=False), table))
        assert sent.bulk_rows == 3_000 - 1, mode
        assert same(out[0], out[1]), mode
        assert [letter[1:3] for letter in out[0]["letters"]] == [(1_236, "map")]
        assert len(out[0]["table"]) == len({line.split(",")[0] for line in lines[1:]})


def test_a_killed_bulk_increment_resumes_to_exactly_a_clean_load(tmp_path: Path, url: str) -> None:
    # the classic failure: an increment applied twice. The checkpoint commits with each
    # chunk's merge, so a resume after a kill adds each record once
    n = 200_000
    table = pa.table(
        {
            "id": pa.array([i % 1_000 for i in range(n)], pa.int64()),
            "qty": pa.array([1 + i % 7 for i in range(n)], pa.int64()),
            "amount": pa.array([Decimal(i % 97) / 100 for i in range(n)], pa.decimal128(12, 2)),
        }
    )
    path = tmp_path / "k.parquet"
    pq.write_table(table, path, row_group_size=20_000)
    add = ["qty"] if url.startswith("sqlite") else ["qty", "amount"]
    amount = "DECIMAL_TEXT(20, 2)" if url.startswith("sqlite") else "DECIMAL(20,2)"
    ddl = "CREATE TABLE {} (id BIGINT PRIMARY KEY, qty BIGINT, amount " + amount + ")"
    execute(url, ddl.format("k"), ddl.format("clean"))
    script = (
        "import sys, batchline as bl, pyarrow.parquet as pq\n"
        f"bl.Pipeline(sys.argv[1], writes=[bl.Increment('k', key='id', columns={add!r})],"
        " chunk_size=2_000).run(pq.read_table(sys.argv[2]), job='k')\n"
    )
    position = kill_after_first_commit(url, script, str(path))
    if position == 0 or position >= n:
        pytest.skip("the load finished before it could be killed mid-way")
    write = bl.Increment("k", key="id", columns=add)
    resumed = bl.Pipeline(url, writes=[write], chunk_size=2_000).run(pq.read_table(path), job="k")
    assert resumed.resumed_from > 0 and resumed.status == "success"
    clean = bl.Pipeline(url, writes=[bl.Increment("clean", key="id", columns=add)]).run(
        pq.read_table(path), job="c"
    )
    assert clean.status == "success"
    sql = "SELECT id, qty, amount FROM {} ORDER BY id"
    assert rows(url, sql.format("k")) == rows(url, sql.format("clean"))
    assert rows(url, "SELECT sum(qty) FROM k") == [(sum(1 + i % 7 for i in range(n)),)]
    assert rows(url, "SELECT position, processed, failed FROM batchline_jobs WHERE name = 'k'") == [
        (n, n, 0)
    ]


@pytest.mark.mysql
def test_a_mysql_key_without_a_unique_index_is_refused_as_on_the_row_path(
    mysql_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ON DUPLICATE KEY would insert duplicates: the bulk path is not taken, and the row
    # path refuses the write, as it always did
    execute(mysql_url, "CREATE TABLE nu (id INT PRIMARY KEY AUTO_INCREMENT, email VARCHAR(50))")
    sent = Sent(monkeypatch)
    with pytest.raises(bl.FatalDatabaseError, match="UNIQUE index"):
        bl.Pipeline(mysql_url, writes=[bl.Upsert("nu", key="email")]).run(
            pa.table({"email": ["a@example.com", "a@example.com"]})
        )
    assert sent.attempts == 0
    assert rows(mysql_url, "SELECT COUNT(*) FROM nu") == [(0,)]
