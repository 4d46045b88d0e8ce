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

Modules: ``_vocabulary`` (the words names are made of), ``_catalog`` (the products),
``_misspell`` (the typos), ``_lines`` (the lines and their bad kinds), ``_schema`` (the
tables and the seeded catalog); this package hands their public names on.
"""

from ._catalog import Product, make_catalog
from ._lines import BAD_KINDS, make_lines
from ._schema import create_schema, invoice_metadata, seed_catalog

__all__ = [
    "BAD_KINDS",
    "Product",
    "create_schema",
    "invoice_metadata",
    "make_catalog",
    "make_lines",
    "seed_catalog",
]
