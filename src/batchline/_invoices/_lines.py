"""The invoice lines: Zipf-skewed items, misspelt descriptions, new products and bad lines.

Why a module of its own: this is the stream every demo and bench run loads, generated lazily
from independent seeded random streams so that special lines never shift ordinary ones, and
line k is the same in a clean run and in one where other lines are bad.
"""

from __future__ import annotations

import functools
import itertools
import random
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any

from ._catalog import Product, money
from ._misspell import misspell
from ._vocabulary import NEW_PRODUCT_TEMPLATE, fill_template

__all__ = ["BAD_KINDS", "make_lines"]

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


def _price(unit_cost: Decimal, markup_per_mille: int) -> str:
    """``unit_cost`` marked up, as a 2-place decimal string (integer cents: fast, exact)."""
    cents = (_cents(unit_cost) * markup_per_mille + 500) // 1000
    return f"{cents // 100}.{cents % 100:02d}"


@functools.lru_cache(maxsize=16384)
def _cents(amount: Decimal) -> int:
    return int(amount * 100)


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
        description = misspell(product.name, noise) if noise.random() < 0.5 else product.name
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
    template, words = NEW_PRODUCT_TEMPLATE
    for _ in range(1000):
        name = fill_template(rng, template, words)
        if name not in taken and name not in made_names:
            break
    else:
        name = f"Prototype Gadget {number}"
    return Product(0, f"NEW-{number:05d}", name, money(rng, 2.0, 120.0))
