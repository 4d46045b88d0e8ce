"""The catalog: products with unique realistic names, SKUs and unit costs, from a seed.

Why a module of its own: the catalog is seeded into the database before any line is loaded,
and every strategy and the demo must see the same products with the same ids.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from decimal import Decimal

from ._vocabulary import CATALOG_TEMPLATES, fill_template

__all__ = ["Product", "make_catalog", "money"]


@dataclass(frozen=True, slots=True)
class Product:
    """One catalog entry; ``unit_cost`` is what invoice prices are marked up from."""

    id: int
    sku: str
    name: str
    unit_cost: Decimal


def money(rng: random.Random, low: float, high: float) -> Decimal:
    return Decimal(f"{rng.uniform(low, high):.2f}")


def make_catalog(n_products: int = 3000, *, seed: int = 7) -> list[Product]:
    """Build ``n_products`` products with unique realistic names and SKUs ``SKU-000001``...

    Ids run 1..n in order, so they can be inserted as they are.
    """
    if n_products < 0:
        raise ValueError("n_products must be >= 0")
    rng = random.Random(seed)
    weights = list(itertools.accumulate(w for w, _, _ in CATALOG_TEMPLATES))
    names: set[str] = set()
    products: list[Product] = []
    attempts = 0
    while len(products) < n_products:
        attempts += 1
        if attempts > 50 * n_products + 1000:
            raise ValueError(f"cannot make {n_products} unique product names")
        _, template, words = rng.choices(CATALOG_TEMPLATES, cum_weights=weights)[0]
        name = fill_template(rng, template, words)
        if name in names:
            continue
        names.add(name)
        pid = len(products) + 1
        products.append(Product(pid, f"SKU-{pid:06d}", name, money(rng, 0.25, 250.0)))
    return products
