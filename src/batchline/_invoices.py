"""The deterministic invoice workload behind ``batchline demo`` and ``batchline bench``.

Why it exists: the demo and every benchmark strategy must run on the *same* lines, so their
results (and the database states they leave) can be compared. Everything here derives from
explicit seeds through :class:`random.Random`; no global random state is touched.

The workload mirrors the seed's use case: invoice lines name a product by SKU and by a
free-text description that is often misspelt (so a fuzzy match against the catalog is
needed), items are Zipf-skewed (a few hot items take most lines, as in real sales, which is
what makes "aggregate before update" pay), some lines name products the catalog does not have
yet (a get-or-create ``Lookup``), and some lines are deliberately bad (dead letters).

Schema (SQLAlchemy Core, portable to SQLite, PostgreSQL and MariaDB)::

    catalog(id PK, sku UNIQUE, name)
    transactions(invoice_id, line_no, item_id -> catalog.id, quantity > 0, unit_cost >= 0,
                 PK(invoice_id, line_no))
    inventory(item_id PK -> catalog.id, quantity DEFAULT 0)

Foreign keys are declared but SQLite only enforces them with ``PRAGMA foreign_keys=ON``;
the bad lines are chosen so that each one fails on every backend without relying on them.
"""

from __future__ import annotations

import functools
import itertools
import random
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

__all__ = [
    "BAD_KINDS",
    "Product",
    "create_schema",
    "invoice_metadata",
    "make_catalog",
    "make_lines",
    "seed_catalog",
]

#: The kinds of deliberately bad line, in the order ``make_lines(bad_every=N)`` cycles them.
#: Each value says where the line must fail.
BAD_KINDS: tuple[tuple[str, str], ...] = (
    ("quantity_not_a_number", "map: quantity is 'abc'"),
    ("negative_unit_price", "CHECK ck_transactions_unit_cost_nonnegative"),
    ("zero_quantity", "CHECK ck_transactions_quantity_positive"),
    ("unmatchable", "empty sku and description: no product can be found or created"),
    ("duplicate_key", "PRIMARY KEY pk_transactions: repeats an earlier (invoice_id, line_no)"),
)

_FIRST_INVOICE_ID = 1_000_001


@dataclass(frozen=True, slots=True)
class Product:
    """One catalog entry; ``unit_cost`` is what invoice prices are marked up from."""

    id: int
    sku: str
    name: str
    unit_cost: Decimal


# --- names ------------------------------------------------------------------------------
# Each template draws one word from each list in turn; the combinations are far more than
# a few thousand, so unique names come quickly.

_CATALOG_TEMPLATES: tuple[tuple[int, str, tuple[tuple[str, ...], ...]], ...] = (
    (
        5,
        "{} {} {} M{} x {}mm",
        (
            ("Stainless Steel", "Zinc Plated", "Galvanized", "Brass", "Black Oxide"),
            ("Hex", "Socket Head", "Pan Head", "Countersunk", "Button Head", "Flange"),
            ("Bolt", "Screw", "Cap Screw", "Machine Screw"),
            ("3", "4", "5", "6", "8", "10", "12"),
            ("10", "12", "16", "20", "25", "30", "35", "40", "50", "60", "70", "80", "100"),
        ),
    ),
    (
        2,
        "{} {} M{} Pack of {}",
        (
            ("Stainless Steel", "Zinc Plated", "Galvanized", "Brass", "Nylon"),
            ("Hex Nut", "Nyloc Nut", "Flat Washer", "Spring Washer", "Wing Nut", "Dome Nut"),
            ("3", "4", "5", "6", "8", "10", "12", "16"),
            ("10", "25", "50", "100", "200"),
        ),
    ),
    (
        2,
        "{} Gloves {} Box of {}",
        (
            ("Nitrile", "Latex", "Vinyl", "Powder Free Nitrile", "Cut Resistant", "Leather Work"),
            ("Small", "Medium", "Large", "Extra Large"),
            ("50", "100", "200"),
        ),
    ),
    (
        2,
        "{} Tape {}mm x {}m {}",
        (
            ("Duct", "Masking", "Electrical Insulation", "Packing", "Double Sided", "Gaffer"),
            ("12", "19", "25", "38", "48", "50", "75"),
            ("10", "25", "33", "50", "66"),
            ("Black", "White", "Grey", "Red", "Blue", "Yellow", "Clear", "Green"),
        ),
    ),
    (
        2,
        "{} Cable Ties {} x {}mm {} Pack of {}",
        (
            ("Nylon", "Heavy Duty", "Releasable", "Stainless Steel", "UV Resistant"),
            ("2.5", "3.6", "4.8", "7.6"),
            ("100", "150", "200", "300", "380", "500"),
            ("Black", "Natural", "Assorted"),
            ("50", "100", "500"),
        ),
    ),
    (
        2,
        "{} {} {} Litre",
        (
            ("Heavy Duty", "Industrial", "Eco", "Citrus", "Fragrance Free", "Concentrated"),
            (
                "Degreaser",
                "Floor Cleaner",
                "Hand Soap",
                "Glass Cleaner",
                "Disinfectant",
                "Washing Up Liquid",
                "Surface Spray",
            ),
            ("0.5", "1", "2", "5", "10", "20"),
        ),
    ),
    (
        2,
        "{} LED Bulb {} {}W {}",
        (
            ("Dimmable", "Standard", "Filament", "Frosted", "Smart"),
            ("E27", "E14", "B22", "GU10", "GU5.3"),
            ("4", "5", "6", "7", "9", "11", "13", "15"),
            ("Warm White", "Cool White", "Daylight", "Neutral White"),
        ),
    ),
    (
        2,
        "{} {} {}mm",
        (
            ("Copper", "Brass", "PVC", "Stainless Steel", "Chrome Plated", "Galvanized"),
            (
                "Elbow 90 Degree",
                "Elbow 45 Degree",
                "Equal Tee",
                "Straight Coupler",
                "Reducer",
                "End Cap",
                "Compression Fitting",
                "Ball Valve",
            ),
            ("8", "10", "15", "22", "28", "35", "42", "54"),
        ),
    ),
    (
        1,
        "Safety {} {} {}",
        (
            ("Glasses", "Goggles", "Helmet", "Boots", "Vest", "Ear Defenders"),
            ("Clear", "Tinted", "Yellow", "Orange", "Black", "White"),
            ("Anti Fog", "Standard", "Vented", "Large", "Medium", "Small", "Extra Large"),
        ),
    ),
    (
        1,
        "Copy Paper {} {}gsm {} Ream of {}",
        (
            ("A4", "A3", "A5", "Letter"),
            ("75", "80", "90", "100", "120", "160"),
            ("White", "Ivory", "Recycled", "Bright White", "Assorted"),
            ("250", "500"),
        ),
    ),
)

# Products the catalog never has: a separate vocabulary, so a fuzzy match against the catalog
# scores low and the line goes to "create".
_NEW_TEMPLATE: tuple[str, tuple[tuple[str, ...], ...]] = (
    "{} {} {} Series {}",
    (
        ("Ergonomic", "Foldable", "Rechargeable", "Wireless", "Solar", "Bamboo", "Insulated"),
        (
            "Standing Desk Mat",
            "Garden Light",
            "Label Printer",
            "Water Bottle",
            "Headset",
            "Desk Lamp",
            "Phone Stand",
            "Lunch Box",
            "Monitor Arm",
            "Bike Pump",
        ),
        ("Graphite", "Sage", "Coral", "Navy", "Sand", "Plum"),
        tuple(str(n) for n in range(1, 100)),
    ),
)

# Abbreviations people really type on invoices; applied to whole words only.
_ABBREVIATIONS: tuple[tuple[str, str], ...] = (
    ("Extra Large", "XL"),
    ("Large", "Lg"),
    ("Medium", "Med"),
    ("Small", "Sm"),
    ("Stainless Steel", "SS"),
    ("Galvanized", "Galv"),
    ("Box of", "Bx"),
    ("Pack of", "Pk"),
    ("Litre", "Ltr"),
    ("Degree", "Deg"),
    ("Black", "Blk"),
    ("White", "Wht"),
    ("Heavy Duty", "HD"),
    ("Assorted", "Asst"),
    ("Electrical", "Elec"),
    ("Compression", "Comp"),
)


def _fill(rng: random.Random, template: str, words: tuple[tuple[str, ...], ...]) -> str:
    return template.format(*(rng.choice(choices) for choices in words))


def _price(unit_cost: Decimal, markup_per_mille: int) -> str:
    """``unit_cost`` marked up, as a 2-place decimal string (integer cents: fast, exact)."""
    cents = (_cents(unit_cost) * markup_per_mille + 500) // 1000
    return f"{cents // 100}.{cents % 100:02d}"


@functools.lru_cache(maxsize=16384)
def _cents(amount: Decimal) -> int:
    return int(amount * 100)


def _money(rng: random.Random, low: float, high: float) -> Decimal:
    return Decimal(f"{rng.uniform(low, high):.2f}")


def make_catalog(n_products: int = 3000, *, seed: int = 7) -> list[Product]:
    """Build ``n_products`` products with unique realistic names and SKUs ``SKU-000001``...

    Ids run 1..n in order, so they can be inserted as they are.
    """
    if n_products < 0:
        raise ValueError("n_products must be >= 0")
    rng = random.Random(seed)
    weights = list(itertools.accumulate(w for w, _, _ in _CATALOG_TEMPLATES))
    names: set[str] = set()
    products: list[Product] = []
    attempts = 0
    while len(products) < n_products:
        attempts += 1
        if attempts > 50 * n_products + 1000:
            raise ValueError(f"cannot make {n_products} unique product names")
        _, template, words = rng.choices(_CATALOG_TEMPLATES, cum_weights=weights)[0]
        name = _fill(rng, template, words)
        if name in names:
            continue
        names.add(name)
        pid = len(products) + 1
        products.append(Product(pid, f"SKU-{pid:06d}", name, _money(rng, 0.25, 250.0)))
    return products


# --- misspellings -----------------------------------------------------------------------


@functools.lru_cache(maxsize=16384)
def _letter_positions(text: str) -> tuple[int, ...]:
    """Indexes inside alphabetic words of 4+ letters (not first letter): safe to garble."""
    positions: list[int] = []
    start = 0
    for word in text.split(" "):
        if len(word) >= 4 and word.isalpha():
            positions.extend(range(start + 1, start + len(word)))
        start += len(word) + 1
    return tuple(positions)


@functools.lru_cache(maxsize=16384)
def _abbreviations_in(text: str) -> tuple[tuple[str, str], ...]:
    padded = f" {text} "
    return tuple((long, short) for long, short in _ABBREVIATIONS if f" {long} " in padded)


@functools.lru_cache(maxsize=16384)
def _capitalised_words(text: str) -> tuple[int, ...]:
    return tuple(i for i, word in enumerate(text.split(" ")) if word != word.lower())


def _misspell_once(text: str, rng: random.Random) -> str:
    op = rng.choice(("abbreviate", "drop", "swap", "double", "case"))
    if op == "abbreviate":
        found = _abbreviations_in(text)
        if found:
            long, short = rng.choice(found)
            return f" {text} ".replace(f" {long} ", f" {short} ", 1)[1:-1]
        op = "drop"
    if op == "case":
        kind = rng.randrange(3)
        if kind == 0:
            return text.lower()
        if kind == 1:
            return text.upper()
        capitalised = _capitalised_words(text)
        if not capitalised:
            return text.upper()
        words = text.split(" ")
        i = rng.choice(capitalised)
        words[i] = words[i].lower()
        return " ".join(words)
    positions = _letter_positions(text)
    if not positions:
        return text.lower()
    i = rng.choice(positions)
    if op == "drop":
        return text[:i] + text[i + 1 :]
    if op == "double":
        return text[:i] + text[i] + text[i:]
    # swap with the next letter when it is a different letter of the same word
    if i + 1 < len(text) and text[i + 1].isalpha() and text[i + 1] != text[i]:
        return text[:i] + text[i + 1] + text[i] + text[i + 2 :]
    return text[:i] + text[i + 1 :]


def _misspell(text: str, rng: random.Random) -> str:
    """One or two realistic typos; always returns something different from ``text``."""
    out = text
    for _ in range(2 if rng.random() < 0.3 else 1):
        out = _misspell_once(out, rng)
    for _ in range(20):  # two typos can cancel out; a lower-case name has no case to change
        if out != text:
            return out
        out = _misspell_once(text, rng)
    return out


# --- lines ------------------------------------------------------------------------------


def make_lines(
    catalog: Sequence[Product],
    n_lines: int,
    *,
    seed: int = 11,
    bad_every: int = 0,
    new_product_every: int = 0,
    skew: float = 1.1,
) -> Iterator[dict[str, Any]]:
    """Lazily yield ``n_lines`` invoice line dicts over ``catalog``.

    Each line is ``{"invoice_id", "line_no", "sku", "description", "quantity",
    "unit_price"}``; invoices have 1..12 lines numbered from 1, ``unit_price`` is a decimal
    string with 2 places. Items follow a Zipf law with exponent ``skew`` over a shuffled
    catalog, so a few hot items take a large share of lines. About half of descriptions carry
    typos, abbreviations or case changes.

    Args:
        catalog: the products lines refer to (``make_catalog()``).
        n_lines: exact number of lines yielded.
        seed: the same seed (and arguments) gives the same lines.
        bad_every: every Nth line (N, 2N, ...) is bad, cycling through :data:`BAD_KINDS`;
            0 disables. Takes precedence over ``new_product_every`` on the same line.
        new_product_every: every Nth line names a product absent from the catalog (SKU
            ``NEW-00001``...); every other such line repeats an earlier new product, so a
            created product is seen again by later lines. 0 disables.
        skew: Zipf exponent; 0 is uniform.

    Good lines do not depend on ``bad_every`` or ``new_product_every``: line k is the same in
    a clean run and in a run where other lines are bad, which keeps runs comparable.
    """
    if not catalog:
        raise ValueError("catalog is empty")
    if n_lines < 0 or bad_every < 0 or new_product_every < 0:
        raise ValueError("n_lines, bad_every and new_product_every must be >= 0")
    return _generate(catalog, n_lines, seed, bad_every, new_product_every, skew)


def _generate(
    catalog: Sequence[Product],
    n_lines: int,
    seed: int,
    bad_every: int,
    new_product_every: int,
    skew: float,
) -> Iterator[dict[str, Any]]:
    # Independent streams, so special lines never shift the draws of ordinary ones.
    pick = random.Random(seed)
    noise = random.Random(seed * 7919 + 1)
    special = random.Random(seed * 104_729 + 2)

    ranked = list(catalog)
    pick.shuffle(ranked)
    cum_weights = list(itertools.accumulate(1.0 / (r**skew) for r in range(1, len(ranked) + 1)))
    total = cum_weights[-1]
    last = len(ranked) - 1

    catalog_names = {p.name for p in catalog}
    new_products: list[Product] = []
    n_new_lines = 0
    last_good_key: tuple[int, int] | None = None

    invoice_id = _FIRST_INVOICE_ID
    line_no = 0
    invoice_size = pick.randint(1, 12)

    for position in range(1, n_lines + 1):
        if line_no == invoice_size:
            invoice_id += 1
            line_no = 0
            invoice_size = pick.randint(1, 12)
        line_no += 1

        product = ranked[min(bisect_left(cum_weights, pick.random() * total), last)]
        quantity = min(int(pick.paretovariate(1.6)), 50)
        markup = 1150 + int(pick.random() * 650)  # per mille
        description = _misspell(product.name, noise) if noise.random() < 0.5 else product.name
        line: dict[str, Any] = {
            "invoice_id": invoice_id,
            "line_no": line_no,
            "sku": product.sku,
            "description": description,
            "quantity": quantity,
            "unit_price": _price(product.unit_cost, markup),
        }

        if bad_every and position % bad_every == 0:
            kind = BAD_KINDS[(position // bad_every - 1) % len(BAD_KINDS)][0]
            if kind == "quantity_not_a_number":
                line["quantity"] = "abc"
            elif kind == "negative_unit_price":
                line["unit_price"] = "-4.00"
            elif kind == "zero_quantity":
                line["quantity"] = 0
            elif kind == "unmatchable":
                line["sku"] = ""
                line["description"] = ""
            elif last_good_key is not None:  # duplicate_key
                line["invoice_id"], line["line_no"] = last_good_key
            else:  # nothing to duplicate yet: fall back to an unparsable quantity
                line["quantity"] = "abc"
            yield line
            continue

        if new_product_every and position % new_product_every == 0:
            if n_new_lines % 2 == 1 and new_products:
                new = special.choice(new_products)
            else:
                new = _new_product(special, len(new_products) + 1, catalog_names, new_products)
                new_products.append(new)
            n_new_lines += 1
            line["sku"] = new.sku
            line["description"] = new.name
            line["unit_price"] = _price(new.unit_cost, markup)

        last_good_key = (invoice_id, line_no)
        yield line


def _new_product(rng: random.Random, number: int, taken: set[str], made: list[Product]) -> Product:
    made_names = {p.name for p in made}
    template, words = _NEW_TEMPLATE
    for _ in range(1000):
        name = _fill(rng, template, words)
        if name not in taken and name not in made_names:
            break
    else:
        name = f"Prototype Gadget {number}"
    return Product(0, f"NEW-{number:05d}", name, _money(rng, 2.0, 120.0))


# --- schema -----------------------------------------------------------------------------


def invoice_metadata() -> sa.MetaData:
    """A fresh ``MetaData`` with ``catalog``, ``transactions`` and ``inventory``.

    Constraint names are explicit so a violation message says which rule a line broke.
    """
    metadata = sa.MetaData()
    sa.Table(
        "catalog",
        metadata,
        sa.Column("id", sa.Integer, autoincrement=True),
        sa.Column("sku", sa.String(40), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_catalog"),
        sa.UniqueConstraint("sku", name="uq_catalog_sku"),
    )
    sa.Table(
        "transactions",
        metadata,
        sa.Column("invoice_id", sa.BigInteger, nullable=False, autoincrement=False),
        sa.Column("line_no", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("item_id", sa.Integer, nullable=False),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("unit_cost", sa.Numeric(12, 2), nullable=False),
        sa.PrimaryKeyConstraint("invoice_id", "line_no", name="pk_transactions"),
        sa.ForeignKeyConstraint(["item_id"], ["catalog.id"], name="fk_transactions_item"),
        sa.CheckConstraint("quantity > 0", name="ck_transactions_quantity_positive"),
        sa.CheckConstraint("unit_cost >= 0", name="ck_transactions_unit_cost_nonnegative"),
    )
    sa.Table(
        "inventory",
        metadata,
        sa.Column("item_id", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("quantity", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        sa.PrimaryKeyConstraint("item_id", name="pk_inventory"),
        sa.ForeignKeyConstraint(["item_id"], ["catalog.id"], name="fk_inventory_item"),
    )
    return metadata


def create_schema(engine: sa.Engine, *, drop: bool = False) -> None:
    """Create the three tables if missing; with ``drop=True`` drop them first (fresh run)."""
    metadata = invoice_metadata()
    if drop:
        metadata.drop_all(engine)
    metadata.create_all(engine)


def seed_catalog(engine: sa.Engine, catalog: Sequence[Product]) -> None:
    """Insert the catalog (id, sku, name) in one transaction.

    Ids are inserted explicitly so every strategy sees the same ids; on PostgreSQL the id
    sequence is then moved past them, or the first product a ``Lookup`` creates would collide.
    """
    table = invoice_metadata().tables["catalog"]
    rows = [{"id": p.id, "sku": p.sku, "name": p.name} for p in catalog]
    with engine.begin() as conn:
        if rows:
            conn.execute(sa.insert(table), rows)
        if conn.dialect.name == "postgresql":
            conn.execute(
                sa.text(
                    "SELECT setval(pg_get_serial_sequence('catalog', 'id'),"
                    " (SELECT coalesce(max(id), 0) + 1 FROM catalog), false)"
                )
            )
