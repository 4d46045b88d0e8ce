"""``aggregate``: increments summed by their resolved key, first values kept, Refs replaced;
pure functions over a chunk's row buffers, so no database."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import batchline as bl
from batchline._aggregate import Resolved, aggregate
from batchline._chunk import Chunk, Rows
from batchline._out import Out, WriteIndex


def _rows(index: WriteIndex, rows: list[tuple[str, dict[str, Any]]]) -> list[Rows]:
    """The sealed chunk's buffers of write 0 after each row was emitted by a record."""
    chunk = Chunk(index.writes)
    out = Out(index, chunk)
    for n, (kind, row) in enumerate(rows, start=1):
        out.item = len(chunk)  # a record is its index in the chunk
        chunk.positions.append(n)
        chunk.lines.append(n)
        chunk.records.append(row)
        getattr(out, kind)("t", row)
    chunk.seal(above=10**9)
    [buffers] = chunk.rows_for(chunk.good)[:1]
    return buffers


def test_increments_are_summed_per_resolved_key_and_the_first_extra_values_win() -> None:
    shop = bl.Lookup("shops", key="code")
    write = bl.Increment("t", key=["shop", "day"], columns=["n", "amount"])
    index = WriteIndex([write])
    a, b = shop.ref(code="A"), shop.ref(code="B")
    rows = _rows(
        index,
        [
            ("increment", {"shop": a, "day": 1, "n": 1, "amount": Decimal("1.50")}),
            ("increment", {"shop": b, "day": 1, "n": 1, "amount": 2.25}),
            ("increment", {"shop": a, "day": 1, "n": 2, "amount": 0.5, "note": "x", "by": b}),
            ("increment", {"shop": 7, "day": 1, "n": 5, "amount": 1}),  # A's id, given plainly
            ("increment", {"shop": a, "day": 2, "n": 1, "amount": 1}),
        ],
    )
    resolved: Resolved = {shop: {("A",): 7, ("B",): 8}}
    [(cols, summed, owners)] = [g for g in aggregate(write, rows, resolved) if len(g[0]) == 6]
    assert cols == ("shop", "day", "n", "amount", "note", "by")
    # (7, 1): records 1, 3 and 4; the create-only columns come from record 3, its Ref resolved
    assert summed == [(7, 1, 8, Decimal("3.00"), "x", 8)]
    assert owners is None  # merged rows belong to no one record
    rest = [g for g in aggregate(write, rows, resolved) if len(g[0]) == 4]
    assert rest == [(("shop", "day", "n", "amount"), [(7, 2, 1, 1), (8, 1, 1, 2.25)], None)]


def test_a_single_column_key_given_as_a_ref_or_plainly_lands_on_one_row() -> None:
    catalog = bl.Lookup("catalog", key="sku")
    write = bl.Increment("t", key="item", columns=["qty"])
    index = WriteIndex([write])
    rows = _rows(
        index,
        [
            ("increment", {"item": catalog.ref(sku="S1"), "qty": 2}),
            ("increment", {"item": 41, "qty": 3}),
            ("increment", {"item": catalog.ref(sku="S1"), "qty": 4}),
        ],
    )
    groups = aggregate(write, rows, {catalog: {("S1",): 41}})
    assert groups == [(("item", "qty"), [(41, 9)], None)]
    # the records' own rows are untouched (isolation replays them against other resolutions)
    assert rows[0].values[1] == (41, 3)
    assert groups == aggregate(write, rows, {catalog: {("S1",): 41}})


def test_a_one_column_increment_sums_whole_numbers_mixed_numbers_and_keeps_first_extras() -> None:
    """The one-key, one-amount increment (``_one_total``): whole numbers summed exactly
    (beyond 64 bits too), a Decimal beside floats summed as Decimal, and a key's create-only
    columns taken from its first row."""
    write = bl.Increment("t", key="k", columns=["qty"])
    index = WriteIndex([write])
    big = 2**70
    whole = _rows(
        index,
        [("increment", {"k": k, "qty": q}) for k, q in [(2, 1), (1, big), (2, 5), (1, big)]],
    )
    assert aggregate(write, whole, {}) == [(("k", "qty"), [(1, 2 * big), (2, 6)], None)]

    mixed = _rows(
        index,
        [
            ("increment", {"k": 1, "qty": Decimal("0.10")}),
            ("increment", {"k": 1, "qty": 0.2}),
            ("increment", {"k": 2, "qty": 3}),
            ("increment", {"k": 2, "qty": 0.5}),
        ],
    )
    assert aggregate(write, mixed, {}) == [(("k", "qty"), [(1, Decimal("0.30")), (2, 3.5)], None)]

    extras = _rows(
        index,
        [
            ("increment", {"k": 5, "qty": 1, "name": "first"}),
            ("increment", {"k": 4, "qty": 2, "name": "only"}),
            ("increment", {"k": 5, "qty": 3, "name": "second"}),
        ],
    )
    assert aggregate(write, extras, {}) == [
        (("k", "qty", "name"), [(4, 2, "only"), (5, 4, "first")], None)
    ]
