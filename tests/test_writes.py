"""The declared writes and lookups: Refs handed out once per key, and what that must not break."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
import sqlalchemy as sa

import batchline as bl
from tests._schemas import shop_metadata


def test_a_lookup_hands_out_one_ref_per_key() -> None:
    catalog = bl.Lookup("catalog", key="sku")
    first = catalog.ref(sku="A")
    assert catalog.ref(sku="A") is first
    assert catalog.ref(sku="B") is not first
    # create=False ignores extra values, so they need no Ref of their own
    assert catalog.ref(sku="A", name="anything") is first
    assert first.values is None  # nothing kept for creating rows


def test_a_creating_lookup_keeps_each_records_own_values() -> None:
    catalog = bl.Lookup("catalog", key="sku", create=True)
    a1 = catalog.ref(sku="A", name="one")
    a2 = catalog.ref(sku="A", name="two")
    assert a1 is not a2
    assert (a1.values, a2.values) == ({"sku": "A", "name": "one"}, {"sku": "A", "name": "two"})
    assert catalog.ref(sku="K") is catalog.ref(sku="K")  # key only: shared


def test_a_pickled_lookup_starts_without_refs() -> None:
    catalog = bl.Lookup("catalog", key=["sku", "shop"], returns="id", create=True)
    catalog.ref(sku="A", shop=1)
    copy = pickle.loads(pickle.dumps(catalog))
    assert (copy.table, copy.key, copy.returns, copy.create) == (
        "catalog",
        ("sku", "shop"),
        "id",
        True,
    )
    assert copy._interned == {}
    assert copy.ref(sku="A", shop=1) is copy.ref(sku="A", shop=1)


def test_one_records_bad_create_values_do_not_fail_another_with_the_same_key(
    sqlite_url: str,
) -> None:
    # The first record would create catalog row "A" with a NULL name (NOT NULL); the second
    # carries a good name. Only the first is dead-lettered; the second creates the row.
    engine = sa.create_engine(sqlite_url)
    shop_metadata().create_all(engine)
    catalog = bl.Lookup("catalog", key="sku", create=True)
    pipeline = bl.Pipeline(sqlite_url, writes=[bl.Insert("transactions")], lookups=[catalog])

    def map_line(record: dict[str, Any], out: bl.Out) -> None:
        item = catalog.ref(sku=record["sku"], name=record["name"])
        row = {"invoice_id": record["n"], "line_no": 1, "item_id": item, "quantity": 1}
        out.insert("transactions", {**row, "unit_cost": 1})

    records = [{"n": 1, "sku": "A", "name": None}, {"n": 2, "sku": "A", "name": "apple"}]
    result = pipeline.run(records, map_line)
    assert [(f.position, f.stage) for f in result.failed_items] == [(1, "lookup")]
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT sku, name FROM catalog")).all() == [("A", "apple")]
        assert conn.execute(sa.text("SELECT invoice_id FROM transactions")).all() == [(2,)]
    engine.dispose()


def test_a_write_declared_twice_is_refused_and_kinds_of_one_table_are_told_apart() -> None:
    from batchline._out import WriteIndex

    with pytest.raises(bl.ConfigError, match="insert t is declared twice"):
        WriteIndex([bl.Insert("t"), bl.Insert("t")])
    index = WriteIndex([bl.Insert("t"), bl.Increment("t", key="k", columns=["n"])])
    assert (index.find("insert", "t"), index.find("increment", "t")) == (0, 1)
    with pytest.raises(bl.ConfigError, match="several writes match"):
        index.find(None, "t")
