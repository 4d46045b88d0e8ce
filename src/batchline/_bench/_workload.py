"""The bench's tables and workload: the lines every strategy loads, and what they must leave.

Why a separate schema: the bench runs against whatever ``--db`` names, so its tables carry a
prefix (``bench_catalog``, ``bench_transactions``, ``bench_inventory``) and never touch a
user's ``catalog``. Columns and CHECKs are those of ``batchline._invoices.invoice_metadata``.

The expected state is computed in Python from the lines, so each strategy is checked against
the truth, not against another strategy.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from .._invoices import Product, make_catalog, make_lines

__all__ = ["TX_COLUMNS", "BenchTables", "Row", "Workload", "expected_rows", "make_workload"]

#: A transactions row as the strategies write it: (invoice_id, line_no, item_id, quantity,
#: unit_cost as a 2-place decimal string).
Row = tuple[int, int, int, int, str]
TX_COLUMNS = ("invoice_id", "line_no", "item_id", "quantity", "unit_cost")


@dataclass(frozen=True)
class BenchTables:
    """The three prefixed tables (SQLAlchemy Core), built once per run."""

    prefix: str
    metadata: sa.MetaData
    catalog: sa.Table
    transactions: sa.Table
    inventory: sa.Table

    @classmethod
    def build(cls, prefix: str = "bench_") -> BenchTables:
        md = sa.MetaData()
        catalog = sa.Table(
            f"{prefix}catalog",
            md,
            sa.Column("id", sa.Integer, autoincrement=True),
            sa.Column("sku", sa.String(40), nullable=False),
            sa.Column("name", sa.String(200), nullable=False),
            sa.PrimaryKeyConstraint("id", name=f"pk_{prefix}catalog"),
            sa.UniqueConstraint("sku", name=f"uq_{prefix}catalog_sku"),
        )
        transactions = sa.Table(
            f"{prefix}transactions",
            md,
            sa.Column("invoice_id", sa.BigInteger, nullable=False, autoincrement=False),
            sa.Column("line_no", sa.Integer, nullable=False, autoincrement=False),
            sa.Column("item_id", sa.Integer, nullable=False),
            sa.Column("quantity", sa.Integer, nullable=False),
            sa.Column("unit_cost", sa.Numeric(12, 2), nullable=False),
            sa.PrimaryKeyConstraint("invoice_id", "line_no", name=f"pk_{prefix}transactions"),
            sa.ForeignKeyConstraint(
                ["item_id"], [catalog.c.id], name=f"fk_{prefix}transactions_item"
            ),
            sa.CheckConstraint("quantity > 0", name=f"ck_{prefix}transactions_quantity"),
            sa.CheckConstraint("unit_cost >= 0", name=f"ck_{prefix}transactions_unit_cost"),
        )
        inventory = sa.Table(
            f"{prefix}inventory",
            md,
            sa.Column("item_id", sa.Integer, nullable=False, autoincrement=False),
            sa.Column("quantity", sa.BigInteger, nullable=False, server_default=sa.text("0")),
            sa.PrimaryKeyConstraint("item_id", name=f"pk_{prefix}inventory"),
            sa.ForeignKeyConstraint(["item_id"], [catalog.c.id], name=f"fk_{prefix}inventory_item"),
        )
        return cls(prefix, md, catalog, transactions, inventory)

    @property
    def state_prefix(self) -> str:
        """Where batchline's own state tables go during the bench."""
        return f"{self.prefix}batchline_"

    def create(self, engine: sa.Engine, catalog: Sequence[Product]) -> None:
        """Drop and recreate the bench tables, and seed the catalog with explicit ids."""
        self.drop(engine)
        self.metadata.create_all(engine)
        rows = [{"id": p.id, "sku": p.sku, "name": p.name} for p in catalog]
        with engine.begin() as conn:
            conn.execute(sa.insert(self.catalog), rows)
            if engine.dialect.name == "postgresql" and rows:
                # explicit ids leave the serial behind them: a created product would collide
                conn.execute(
                    sa.select(
                        sa.func.setval(
                            sa.func.pg_get_serial_sequence(self.catalog.fullname, "id"),
                            max(p.id for p in catalog),
                        )
                    )
                )

    def drop(self, engine: sa.Engine) -> None:
        """Drop the bench tables and the state tables batchline made for them."""
        self.metadata.drop_all(engine)
        with engine.connect() as conn:
            names = sa.inspect(conn).get_table_names()
        state = [n for n in names if n.startswith(self.state_prefix)]
        if state:
            md = sa.MetaData()
            for name in state:
                sa.Table(name, md)
            md.drop_all(engine)

    def reset(self, engine: sa.Engine) -> None:
        """Empty transactions and inventory (the catalog stays) before the next strategy."""
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                prep = engine.dialect.identifier_preparer
                names = ", ".join(prep.format_table(t) for t in self._written)
                conn.exec_driver_sql(f"TRUNCATE {names}")
            else:
                for table in self._written:
                    conn.execute(sa.delete(table))

    @property
    def _written(self) -> tuple[sa.Table, sa.Table]:
        return (self.transactions, self.inventory)


@dataclass(frozen=True)
class Workload:
    """The lines a strategy loads, and the knobs every strategy shares."""

    tables: BenchTables
    lines: Sequence[dict[str, Any]]
    skus: dict[str, int] = field(repr=False)  # sku -> id; only the floor and checks use it
    chunk_size: int = 500
    tuned_chunk_size: int = 5000

    def head(self, n: int) -> Workload:
        """The first ``n`` lines only (a sample for the slow strategies)."""
        return replace(self, lines=self.lines[:n]) if n < len(self.lines) else self

    def chunks(self, size: int) -> Iterator[Sequence[dict[str, Any]]]:
        """The lines, ``size`` at a time (the last chunk may be shorter)."""
        for start in range(0, len(self.lines), size):
            yield self.lines[start : start + size]

    @functools.cached_property
    def mapped(self) -> list[Row]:
        """The transactions rows, already mapped (the floor's input)."""
        skus = self.skus
        return [
            (
                line["invoice_id"],
                line["line_no"],
                skus[line["sku"]],
                line["quantity"],
                line["unit_price"],
            )
            for line in self.lines
        ]

    @functools.cached_property
    def totals(self) -> dict[int, int]:
        """Quantity per item: what inventory must hold after the load."""
        totals: Counter[int] = Counter()
        for row in self.mapped:
            totals[row[2]] += row[3]
        return dict(totals)


def make_workload(
    tables: BenchTables,
    n_lines: int,
    *,
    n_products: int = 3000,
    seed: int = 11,
    chunk_size: int = 500,
    tuned_chunk_size: int = 5000,
) -> tuple[Workload, list[Product]]:
    """Good lines only, over a pre-seeded catalog (lookups are pure lookups)."""
    catalog = make_catalog(n_products)
    lines = list(make_lines(catalog, n_lines, seed=seed, bad_every=0, new_product_every=0))
    skus = {p.sku: p.id for p in catalog}
    work = Workload(tables, lines, skus, chunk_size, tuned_chunk_size)
    return work, catalog


def expected_rows(work: Workload) -> list[tuple[int, int, int, int, Decimal]]:
    """The transactions table a correct load leaves, sorted by key."""
    return sorted((r[0], r[1], r[2], r[3], Decimal(r[4])) for r in work.mapped)
