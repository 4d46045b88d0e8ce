"""The invoice workload: deterministic, skewed, noisy, with bad lines the schema rejects."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from batchline._invoices import (
    BAD_KINDS,
    Product,
    create_schema,
    invoice_metadata,
    make_catalog,
    make_lines,
    seed_catalog,
)


@pytest.fixture(scope="module")
def catalog() -> list[Product]:
    return make_catalog()


def _bad_positions(lines: list[dict[str, object]], every: int) -> dict[str, list[int]]:
    """Line positions (1-based) of each bad kind, by the documented cycle."""
    kinds: dict[str, list[int]] = {kind: [] for kind, _ in BAD_KINDS}
    for position in range(every, len(lines) + 1, every):
        kinds[BAD_KINDS[(position // every - 1) % len(BAD_KINDS)][0]].append(position)
    return kinds


def test_catalog_names_and_skus_are_unique_and_realistic(catalog: list[Product]) -> None:
    assert len(catalog) == 3000
    assert len({p.name for p in catalog}) == 3000
    assert [p.id for p in catalog] == list(range(1, 3001))
    assert catalog[122].sku == "SKU-000123"
    assert all(
        p.unit_cost > 0 and p.unit_cost == p.unit_cost.quantize(Decimal("0.01")) for p in catalog
    )
    assert all(len(p.name) <= 200 for p in catalog)
    assert any("Gloves Large Box of" in p.name for p in catalog)


def test_same_seed_same_workload_other_seed_other_workload(catalog: list[Product]) -> None:
    assert make_catalog(300, seed=3) == make_catalog(300, seed=3)
    assert make_catalog(300, seed=3) != make_catalog(300, seed=4)
    args = {"bad_every": 40, "new_product_every": 30}
    first = list(make_lines(catalog, 3000, **args))
    assert first == list(make_lines(catalog, 3000, **args))
    assert first != list(make_lines(catalog, 3000, seed=12, **args))


def test_lines_have_the_documented_shape(catalog: list[Product]) -> None:
    lines = list(make_lines(catalog, 5000))
    assert len(lines) == 5000
    for line in lines:
        assert set(line) == {
            "invoice_id",
            "line_no",
            "sku",
            "description",
            "quantity",
            "unit_price",
        }
        assert isinstance(line["quantity"], int) and line["quantity"] > 0
        assert Decimal(line["unit_price"]) == Decimal(line["unit_price"]).quantize(Decimal("0.01"))
        assert Decimal(line["unit_price"]) > 0
    # line numbers run 1..k within each invoice
    keys = [(line["invoice_id"], line["line_no"]) for line in lines]
    assert len(set(keys)) == len(keys)
    by_invoice: dict[int, list[int]] = {}
    for invoice_id, line_no in keys:
        by_invoice.setdefault(invoice_id, []).append(line_no)
    assert all(nos == list(range(1, len(nos) + 1)) for nos in by_invoice.values())
    assert len(by_invoice) > 5000 / 12


def test_lines_are_generated_lazily(catalog: list[Product]) -> None:
    lines = make_lines(catalog, 10**12)  # would never finish if built eagerly
    assert len(list(itertools.islice(lines, 10))) == 10


def test_items_are_skewed_towards_hot_keys(catalog: list[Product]) -> None:
    counts = Counter(line["sku"] for line in make_lines(catalog, 20_000))
    average = 20_000 / len(catalog)
    top = counts.most_common(1)[0][1]
    assert top > 100 * average
    assert sum(n for _, n in counts.most_common(10)) > 0.3 * 20_000
    uniform = Counter(line["sku"] for line in make_lines(catalog, 20_000, skew=0))
    assert uniform.most_common(1)[0][1] < 5 * average


def test_about_half_of_descriptions_are_misspelt(catalog: list[Product]) -> None:
    names = {p.sku: p.name for p in catalog}
    lines = list(make_lines(catalog, 4000))
    noisy = [line for line in lines if line["description"] != names[line["sku"]]]
    assert 0.4 < len(noisy) / len(lines) < 0.6
    descriptions = " ".join(line["description"] for line in noisy)
    assert " Lg " in descriptions or descriptions.endswith(" Lg")  # abbreviations
    assert any(line["description"] == names[line["sku"]].upper() for line in noisy)
    assert any(line["description"] == names[line["sku"]].lower() for line in noisy)
    # typos are small: the name stays recognisable
    for line in noisy[:500]:
        assert abs(len(line["description"]) - len(names[line["sku"]])) <= 14


def test_every_bad_kind_appears_where_documented(catalog: list[Product]) -> None:
    every = 25
    lines = list(make_lines(catalog, 1000, bad_every=every))
    positions = _bad_positions(lines, every)
    for position in positions["quantity_not_a_number"]:
        assert lines[position - 1]["quantity"] == "abc"
    for position in positions["negative_unit_price"]:
        assert lines[position - 1]["unit_price"] == "-4.00"
    for position in positions["zero_quantity"]:
        assert lines[position - 1]["quantity"] == 0
    for position in positions["unmatchable"]:
        assert lines[position - 1]["sku"] == lines[position - 1]["description"] == ""
    seen: set[tuple[object, object]] = set()
    duplicates = set(positions["duplicate_key"])
    for position, line in enumerate(lines, 1):
        key = (line["invoice_id"], line["line_no"])
        assert (key in seen) == (position in duplicates)
        seen.add(key)
    assert all(len(p) == 8 for p in positions.values())


def test_good_lines_do_not_depend_on_bad_or_new_lines(catalog: list[Product]) -> None:
    clean = list(make_lines(catalog, 2000))
    noisy = list(make_lines(catalog, 2000, bad_every=7, new_product_every=11))
    special = set(range(7, 2001, 7)) | set(range(11, 2001, 11))
    for position, (a, b) in enumerate(zip(clean, noisy), 1):
        if position not in special:
            assert a == b


def test_new_products_are_not_in_the_catalog_and_recur(catalog: list[Product]) -> None:
    lines = list(make_lines(catalog, 6000, new_product_every=20))
    new = [line for line in lines if line["sku"].startswith("NEW-")]
    assert len(new) == 6000 // 20
    catalog_names = {p.name for p in catalog}
    assert not {line["description"] for line in new} & catalog_names
    by_sku: dict[str, set[str]] = {}
    for line in new:
        by_sku.setdefault(line["sku"], set()).add(line["description"])
    assert all(len(names) == 1 for names in by_sku.values())  # one name per new product
    assert len({names.pop() for names in by_sku.values()}) == len(by_sku)
    counts = Counter(line["sku"] for line in new)
    assert counts["NEW-00001"] >= 1 and sum(1 for n in counts.values() if n > 1) >= 10
    # a new product first seen in one place recurs well after it (in another chunk)
    first = {sku: lines.index(next(x for x in new if x["sku"] == sku)) for sku in counts}
    last = {sku: max(i for i, x in enumerate(lines) if x["sku"] == sku) for sku in counts}
    assert any(last[sku] - first[sku] > 500 for sku in counts)


def test_bad_arguments_are_refused(catalog: list[Product]) -> None:
    with pytest.raises(ValueError):
        make_lines([], 10)
    with pytest.raises(ValueError):
        make_lines(catalog, 10, bad_every=-1)
    with pytest.raises(ValueError):
        make_catalog(-1)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'invoices.db'}")
    yield engine
    engine.dispose()


def test_schema_and_seeded_catalog(engine: sa.Engine, catalog: list[Product]) -> None:
    create_schema(engine)
    create_schema(engine)  # idempotent
    seed_catalog(engine, catalog)
    inspector = sa.inspect(engine)
    assert set(inspector.get_table_names()) >= {"catalog", "transactions", "inventory"}
    assert inspector.get_pk_constraint("transactions")["constrained_columns"] == [
        "invoice_id",
        "line_no",
    ]
    with engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from catalog")).scalar() == 3000
        row = conn.execute(sa.text("select id, sku, name from catalog where id = 123")).one()
    assert tuple(row) == (123, "SKU-000123", catalog[122].name)
    create_schema(engine, drop=True)
    with engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from catalog")).scalar() == 0


def test_the_schema_rejects_the_bad_lines(engine: sa.Engine, catalog: list[Product]) -> None:
    create_schema(engine)
    seed_catalog(engine, catalog)
    tables = invoice_metadata().tables
    transactions = tables["transactions"]
    ids = {p.sku: p.id for p in catalog}
    lines = list(make_lines(catalog, 50, bad_every=10))
    positions = _bad_positions(lines, 10)

    def row(line: dict[str, object]) -> dict[str, object]:
        return {
            "invoice_id": line["invoice_id"],
            "line_no": line["line_no"],
            "item_id": ids[str(line["sku"])],
            "quantity": line["quantity"],
            "unit_cost": Decimal(str(line["unit_price"])),
        }

    rejected: dict[str, str] = {}
    for position, line in enumerate(lines, 1):
        kind = next((k for k, p in positions.items() if position in p), None)
        if kind in ("quantity_not_a_number", "unmatchable"):
            continue  # these fail before the database: in the map, and in the lookup
        try:
            with engine.begin() as conn:
                conn.execute(sa.insert(transactions), [row(line)])
        except sa.exc.IntegrityError as exc:
            rejected[str(kind)] = str(exc.orig)
    assert set(rejected) == {"negative_unit_price", "zero_quantity", "duplicate_key"}
    assert "ck_transactions_unit_cost_nonnegative" in rejected["negative_unit_price"]
    assert "ck_transactions_quantity_positive" in rejected["zero_quantity"]
    assert "UNIQUE" in rejected["duplicate_key"]
    with engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from transactions")).scalar() == 50 - 5
    with pytest.raises(ValueError):
        int(str(lines[positions["quantity_not_a_number"][0] - 1]["quantity"]))


def test_inventory_quantity_defaults_to_zero(engine: sa.Engine, catalog: list[Product]) -> None:
    create_schema(engine)
    seed_catalog(engine, catalog[:5])
    inventory = invoice_metadata().tables["inventory"]
    with engine.begin() as conn:
        conn.execute(sa.insert(inventory), [{"item_id": 3}])
        assert conn.execute(sa.select(inventory.c.quantity)).scalar() == 0
