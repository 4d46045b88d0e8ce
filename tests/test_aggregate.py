"""``aggregate``: increments summed by their resolved key, first values kept, Refs replaced;
pure functions, so no database."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import batchline as bl
from batchline._aggregate import Resolved, aggregate
from batchline._items import Item
from batchline._out import Out, WriteIndex


def _items(index: WriteIndex, rows: list[tuple[str, dict[str, Any]]]) -> list[Item]:
    items = []
    for n, (kind, row) in enumerate(rows, start=1):
        item = Item(n, n, row)
        getattr(Out(index, item), kind)("t", row)
        items.append(item)
    return items


def test_increments_are_summed_per_resolved_key_and_the_first_extra_values_win() -> None:
    shop = bl.Lookup("shops", key="code")
    write = bl.Increment("t", key=["shop", "day"], columns=["n", "amount"])
    index = WriteIndex([write])
    a, b = shop.ref(code="A"), shop.ref(code="B")
    items = _items(
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
    [(cols, rows)] = [g for g in aggregate(write, 0, items, resolved) if len(g[0]) == 6]
    assert cols == ("shop", "day", "n", "amount", "note", "by")
    # (7, 1): records 1, 3 and 4; the create-only columns come from record 3, its Ref resolved
    assert rows == [(7, 1, 8, Decimal("3.00"), "x", 8)]
    rest = [g for g in aggregate(write, 0, items, resolved) if len(g[0]) == 4]
    assert rest == [(("shop", "day", "n", "amount"), [(7, 2, 1, 1), (8, 1, 1, 2.25)])]


def test_a_single_column_key_given_as_a_ref_or_plainly_lands_on_one_row() -> None:
    catalog = bl.Lookup("catalog", key="sku")
    write = bl.Increment("t", key="item", columns=["qty"])
    index = WriteIndex([write])
    items = _items(
        index,
        [
            ("increment", {"item": catalog.ref(sku="S1"), "qty": 2}),
            ("increment", {"item": 41, "qty": 3}),
            ("increment", {"item": catalog.ref(sku="S1"), "qty": 4}),
        ],
    )
    groups = aggregate(write, 0, items, {catalog: {("S1",): 41}})
    assert groups == [(("item", "qty"), [(41, 9)])]
    # the records' own rows are untouched (isolation replays them against other resolutions)
    assert items[1].ops[0][1:] == (("item", "qty"), (41, 3))
    assert groups == aggregate(write, 0, items, {catalog: {("S1",): 41}})
