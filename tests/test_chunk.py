"""``Chunk``: rows collected per write and column list, checked and measured a column at a
time when the chunk closes; pure, so no database."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import batchline as bl
from batchline._aggregate import aggregate
from batchline._chunk import Chunk
from batchline._items import Failure
from batchline._out import Out, WriteIndex

CATALOG = bl.Lookup("catalog", key="sku")
WRITES = [
    bl.Insert("lines"),
    bl.Increment("stock", key="item", columns=["qty"]),
    bl.Upsert("notes", key="id"),
]


def _collect(writes: list[bl.Write], records: list[list[tuple[str, str, dict[str, Any]]]]) -> Chunk:
    """A chunk in which record n emitted ``records[n-1]``: (Out method, table, row) each."""
    index = WriteIndex(writes)
    chunk = Chunk(index.writes)
    out = Out(index, chunk)
    for n, emitted in enumerate(records, start=1):
        out.item = len(chunk)  # a record is its index in the chunk
        chunk.positions.append(n)
        chunk.lines.append(n)
        chunk.records.append({"n": n})
        for method, table, row in emitted:
            getattr(out, method)(table, row)
    return chunk


def _failure(chunk: Chunk, item: int) -> Failure:
    return chunk.failures[item]


def test_rows_are_kept_per_write_and_column_list_beside_their_record() -> None:
    ref = CATALOG.ref(sku="A")
    chunk = _collect(
        WRITES,
        [
            [
                ("insert", "lines", {"a": 1, "item": ref}),
                ("increment", "stock", {"item": ref, "qty": 2}),
            ],
            [("insert", "lines", {"a": 2, "b": "x"}), ("insert", "lines", {"a": 3, "item": 7})],
        ],
    )
    chunk.seal(above=10**9)
    first, second = range(len(chunk))
    assert chunk.positions == chunk.lines == [1, 2]
    assert chunk.records == [{"n": 1}, {"n": 2}]
    inserts = chunk.groups[0]
    assert list(inserts) == [("a", "item"), ("a", "b")]
    assert inserts[("a", "item")].values == [(1, ref), (3, 7)]
    assert inserts[("a", "item")].owners == [first, second]
    assert inserts[("a", "item")].refs == (1,)  # the Ref column, found when measured
    assert inserts[("a", "b")].refs == ()
    assert chunk.good == [first, second]
    # a record's rows one by one (by buffer, not in emission order)
    assert set(chunk.ops_of(second)) == {(0, ("a", "b"), (2, "x")), (0, ("a", "item"), (3, 7))}


def test_a_missing_key_or_a_non_number_fails_its_record_at_map_and_drops_all_its_rows() -> None:
    chunk = _collect(
        WRITES,
        [
            [("insert", "lines", {"a": 1}), ("increment", "stock", {"item": 1, "qty": 2})],
            [("insert", "lines", {"a": 2}), ("increment", "stock", {"item": None, "qty": 2})],
            [("insert", "lines", {"a": 3}), ("increment", "stock", {"item": 1, "qty": "2"})],
            [("insert", "lines", {"a": 4}), ("increment", "stock", {"item": 1, "qty": True})],
            [("upsert", "notes", {"text": "no id"})],
            [("insert", "lines", {"a": 6}), ("increment", "stock", {"item": 1})],
        ],
    )
    chunk.seal(above=10**9)
    ok, no_key, text, flag, no_id, no_qty = range(len(chunk))
    assert chunk.good == [ok]
    assert sorted(chunk.failures) == [no_key, text, flag, no_id, no_qty]
    assert _failure(chunk, no_key) == Failure(
        "map", "ValueError", "ValueError: increment stock: key column 'item' is missing or empty"
    )
    assert _failure(chunk, text).message == (
        "ValueError: increment stock: column 'qty' is not a number: '2'"
    )
    assert _failure(chunk, flag).message.endswith("column 'qty' is not a number: True")
    assert _failure(chunk, no_id).message == (
        "ValueError: upsert notes: key column 'id' is missing or empty"
    )
    assert _failure(chunk, no_qty).message == "ValueError: increment stock: column 'qty' is missing"
    # none of the failed records' rows stay, in any write
    assert chunk.groups[0][("a",)].values == [(1,)]
    assert chunk.groups[1][("item", "qty")].owners == [ok]
    assert chunk.groups[2] == {}


def test_discard_forgets_the_rows_a_record_emitted_before_its_mapping_raised() -> None:
    chunk = _collect(WRITES, [[("insert", "lines", {"a": 1})], [("insert", "lines", {"a": 2})]])
    chunk.discard(1)  # the second record
    assert chunk.groups[0][("a",)].values == [(1,)]
    assert chunk.groups[0][("a",)].owners == [0]


def test_rows_for_a_part_of_the_chunk_masks_every_buffer_to_its_records() -> None:
    chunk = _collect(
        WRITES,
        [
            [("insert", "lines", {"a": n}), ("increment", "stock", {"item": n % 2, "qty": n})]
            for n in range(1, 7)
        ],
    )
    chunk.seal(above=10**9)
    part = chunk.good[1::2]  # records 2, 4, 6
    inserts, increments, _ = chunk.rows_for(part)
    assert [r.values for r in inserts] == [[(2,), (4,), (6,)]]
    assert aggregate(WRITES[1], increments, {}) == [(("item", "qty"), [(0, 12)], None)]
    # the whole chunk: its own buffers, not copies
    assert chunk.rows_for(chunk.good)[0][0] is chunk.groups[0][("a",)]


def test_measure_counts_text_and_binary_and_names_records_whose_row_may_be_too_large() -> None:
    chunk = _collect(
        [bl.Insert("lines")],
        [
            [("insert", "lines", {"a": "x" * 10, "b": b"12345", "c": 1})],
            [("insert", "lines", {"a": "y" * 500, "b": None, "c": Decimal("1.5")})],
        ],
    )
    small, big = range(len(chunk))
    # 16 bytes a value, plus the characters and bytes
    assert chunk.measure(above=400) == 16 * 6 + 10 + 5 + 500
    assert chunk.suspects == {big}
    too_large = []
    chunk.seal(400, lambda ops: too_large.append(ops))
    assert too_large == [[(0, ("a", "b", "c"), ("y" * 500, None, Decimal("1.5")))]]
    assert chunk.good == [small, big]  # the callback said None: not too large after all


def test_upserts_of_one_key_in_two_column_lists_keep_their_emission_order() -> None:
    chunk = _collect(
        WRITES,
        [
            [("upsert", "notes", {"id": 1, "text": "first"})],
            [("upsert", "notes", {"id": 1, "text": "second", "by": "me"})],
            [("upsert", "notes", {"id": 1, "text": "third"})],
        ],
    )
    chunk.seal(above=10**9)
    groups = aggregate(WRITES[2], chunk.rows_for(chunk.good)[2], {})
    # one round per upsert of the key, in the order the records emitted them
    assert [rows for _, rows, _ in groups] == [
        [(1, "first")],
        [(1, "second", "me")],
        [(1, "third")],
    ]


def test_a_record_failed_before_the_flush_keeps_its_place_and_loses_its_rows() -> None:
    chunk = _collect(WRITES, [[("insert", "lines", {"a": n})] for n in (1, 2, 3)])
    why = Failure("map", "KeyError", "KeyError: 'x'")
    chunk.fail(2, why)  # the last record's mapping raised after it emitted a row
    chunk.seal(above=10**9)
    assert chunk.good == [0, 1]
    assert chunk.failures == {2: why}
    # its position, line and payload stay, for its dead letter
    assert (chunk.positions[2], chunk.lines[2], chunk.records[2]) == (3, 3, {"n": 3})
    assert chunk.groups[0][("a",)].owners == [0, 1]
    assert chunk.ops_of(2) == []
