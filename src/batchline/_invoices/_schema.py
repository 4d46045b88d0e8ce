"""The invoice tables (catalog, transactions, inventory) and the catalog seeded into them.

Why a module of its own: the schema is what makes the bad lines fail where ``BAD_KINDS`` says
(named CHECK and key constraints), on SQLite, PostgreSQL and MariaDB alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from ._catalog import Product

__all__ = ["create_schema", "invoice_metadata", "seed_catalog"]


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
