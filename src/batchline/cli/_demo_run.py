"""``batchline demo``: the invoice use case end to end, and the one-at-a-time way beside it.

Invoice lines name a product by SKU and by a free-text, often misspelt description. Each
line is matched to the catalog (rapidfuzz), unknown products are created through a batched
get-or-create ``Lookup`` (later lines see them), transactions are inserted and inventory
increments are added up per chunk before they reach the database. Bad lines become dead
letters. The same lines processed one at a time (select the item, insert the transaction,
update the inventory, commit, per line) on a fresh copy of the schema show what batching buys.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from .._database import make_engine
from .._dead_letters import DeadLetters
from .._invoices import create_schema, invoice_metadata, make_catalog, make_lines, seed_catalog
from .._invoices._matching import CatalogMatcher, make_map, parse_line
from .._pipeline import Pipeline
from .._result import Result
from .._writes import Increment, Insert, Lookup
from ._render import render_result

__all__ = ["DemoReport", "SequentialTiming", "run_demo", "run_sequential"]

JOB = "demo"
CATALOG_SIZE = 3000
BAD_EVERY = 1000  # one deliberately bad line in a thousand
NEW_PRODUCT_EVERY = 250  # one line in 250 names a product the catalog lacks
SKU_AGREEMENT = 60  # the description must look at least this much like the SKU's product
FUZZY_CUTOFF = 85  # a description matches a catalog name from this score up
SEQUENTIAL_BUDGET = 10.0  # seconds the one-at-a-time way may take; its rate is what counts
_NUMBERS = re.compile(r"[0-9]+(?:\.[0-9]+)?")


@dataclass
class SequentialTiming:
    """The one-at-a-time way on a sample: per line a select, an insert, an update, a commit."""

    lines: int
    processed: int
    failed: int
    seconds: float

    @property
    def records_per_second(self) -> float:
        return self.lines / self.seconds if self.seconds > 0 else 0.0


def run_sequential(
    engine: sa.Engine,
    products: Sequence[tuple[str, str]],
    lines: Sequence[Mapping[str, Any]],
    *,
    budget: float = SEQUENTIAL_BUDGET,
) -> SequentialTiming:
    """Process ``lines`` one at a time, each in its own transaction (the seed's way).

    Stops early once ``budget`` seconds have passed: the rate is what the comparison needs,
    and a slow disk (a commit is an fsync) should not make the demo take minutes.
    """
    tables = invoice_metadata().tables
    catalog, transactions, inventory = (
        tables["catalog"],
        tables["transactions"],
        tables["inventory"],
    )
    find = sa.select(catalog.c.id).where(catalog.c.sku == sa.bindparam("sku"))
    add_item = sa.insert(catalog)
    add_transaction = sa.insert(transactions)
    bump = (
        sa.update(inventory)
        .where(inventory.c.item_id == sa.bindparam("item"))
        .values(quantity=inventory.c.quantity + sa.bindparam("add"))
    )
    add_stock = sa.insert(inventory)
    matcher = CatalogMatcher(products)
    processed = failed = done = 0
    started = time.perf_counter()
    deadline = started + budget
    with engine.connect() as conn:
        for line in lines:
            if done and time.perf_counter() > deadline:
                break
            done += 1
            try:
                sku, name = matcher.match(line["sku"], line["description"])
                quantity, price = parse_line(line)
                item_id = conn.execute(find, {"sku": sku}).scalar()
                if item_id is None:
                    conn.execute(add_item, {"sku": sku, "name": name})
                    item_id = conn.execute(find, {"sku": sku}).scalar_one()
                conn.execute(
                    add_transaction,
                    {
                        "invoice_id": line["invoice_id"],
                        "line_no": line["line_no"],
                        "item_id": item_id,
                        "quantity": quantity,
                        "unit_cost": price,
                    },
                )
                if conn.execute(bump, {"item": item_id, "add": quantity}).rowcount == 0:
                    conn.execute(add_stock, {"item_id": item_id, "quantity": quantity})
                conn.commit()
                processed += 1
            except (ValueError, sa.exc.DBAPIError):
                conn.rollback()
                failed += 1
    return SequentialTiming(done, processed, failed, time.perf_counter() - started)


@dataclass
class DemoReport:
    """What the demo did: the batchline Result, the sequential timing, and the database state."""

    database: str
    lines: int
    result: Result
    sequential: SequentialTiming | None
    state: dict[str, int] = field(default_factory=dict)
    matching: dict[str, int] = field(default_factory=dict)

    @property
    def speedup(self) -> float | None:
        if self.sequential is None or self.sequential.records_per_second <= 0:
            return None
        return self.result.records_per_second / self.sequential.records_per_second

    def to_dict(self) -> dict[str, Any]:
        seq = self.sequential
        return {
            "database": self.database,
            "lines": self.lines,
            "result": self.result.to_dict(),
            "batchline_records_per_second": round(self.result.records_per_second, 1),
            "sequential": None
            if seq is None
            else {
                "lines": seq.lines,
                "processed": seq.processed,
                "failed": seq.failed,
                "seconds": round(seq.seconds, 3),
                "records_per_second": round(seq.records_per_second, 1),
            },
            "speedup": None if self.speedup is None else round(self.speedup, 1),
            "database_state": self.state,
            "matching": self.matching,
        }

    def render(self, console: Console, *, db_hint: str | None = None) -> None:
        """The summary; ``db_hint`` is what the suggested commands need to find the database
        (default: ``--db`` with its URL)."""
        hint = f" --db {self.database}" if db_hint is None else db_hint
        render_result(
            console,
            self.result.to_dict(),
            title=f"batchline demo: {self.lines:,} lines",
            db_hint=hint,
        )
        table = Table(title="one at a time vs batchline", title_justify="left")
        table.add_column("way")
        table.add_column("lines", justify="right")
        table.add_column("seconds", justify="right")
        table.add_column("records/s", justify="right")
        seq = self.sequential
        if seq is not None:
            table.add_row(
                "one at a time (select, insert, update, commit per line)",
                f"{seq.lines:,}",
                f"{seq.seconds:.2f}",
                f"{seq.records_per_second:,.0f}",
            )
        r = self.result
        table.add_row(
            "batchline (chunks sized by time, lookups and increments batched)",
            f"{r.records_seen:,}",
            f"{r.processing_time_seconds:.2f}",
            f"{r.records_per_second:,.0f}",
        )
        console.print(table)
        if self.speedup is not None:
            console.print(f"batchline is {self.speedup:.1f}x faster than one line at a time.")
        console.print(
            "database: "
            + ", ".join(f"{k} {v:,}" for k, v in self.state.items())
            + f" ({self.database})"
        )
        console.print("matching: " + ", ".join(f"{v:,} {k}" for k, v in self.matching.items()))
        console.print(
            f"Its job and dead letters: batchline jobs{hint}, batchline dlq list --job {JOB}{hint}",
            markup=False,
        )


def _fresh_schema(engine: sa.Engine, products: Sequence[Any]) -> None:
    create_schema(engine, drop=True)
    seed_catalog(engine, products)


def _state(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            name: int(conn.execute(sa.text(sql)).scalar() or 0)
            for name, sql in (
                ("catalog products", "SELECT count(*) FROM catalog"),
                ("transactions", "SELECT count(*) FROM transactions"),
                ("inventory rows", "SELECT count(*) FROM inventory"),
                ("inventory units", "SELECT coalesce(sum(quantity), 0) FROM inventory"),
            )
        }


def run_demo(
    url: str,
    *,
    lines: int = 30_000,
    sequential_sample: int = 2_000,
    echo: Console | None = None,
    check: Callable[[str], None] | None = None,
) -> DemoReport:
    """Build the demo database, time the sequential way on a sample, then run batchline.

    The sequential run goes first, on a fresh schema; the schema is then rebuilt, so the
    database ends holding exactly what batchline loaded (and its dead letters).
    """
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        for suffix in ("", "-journal", "-wal", "-shm"):
            path = f"{parsed.database}{suffix}"
            if os.path.exists(path):
                os.remove(path)
    if check is not None:
        check(url)

    def say(text: str) -> None:
        if echo is not None:
            echo.print(text)

    products = make_catalog(CATALOG_SIZE)
    pairs = [(p.sku, p.name) for p in products]
    work = list(
        make_lines(products, lines, bad_every=BAD_EVERY, new_product_every=NEW_PRODUCT_EVERY)
    )
    engine, _ = make_engine(url)  # the same drivers as the pipeline (psycopg, PyMySQL)
    try:
        sequential: SequentialTiming | None = None
        if sequential_sample:
            sample = list(islice(work, sequential_sample))
            say(
                f"one at a time: up to {len(sample):,} lines (at most {SEQUENTIAL_BUDGET:.0f} s),"
                " a transaction each …"
            )
            _fresh_schema(engine, products)
            sequential = run_sequential(engine, pairs, sample)
        say(f"batchline: {len(work):,} lines …")
        _fresh_schema(engine, products)
        catalog = Lookup("catalog", key="sku", returns="id", create=True)
        matcher = CatalogMatcher(pairs)
        with DeadLetters(url) as letters:
            letters.purge(JOB)
        with Pipeline(
            url,
            writes=[
                Insert("transactions"),
                Increment("inventory", key="item_id", columns=["quantity"]),
            ],
            lookups=[catalog],
        ) as pipeline:
            result = pipeline.run(
                work, make_map(matcher, catalog), job=JOB, restart=True, spec={"command": "demo"}
            )
        return DemoReport(
            database=pipeline_url(url),
            lines=lines,
            result=result,
            sequential=sequential,
            state=_state(engine),
            matching={
                "by SKU (description agrees)": matcher.by_sku,
                "by fuzzy description": matcher.by_description,
                "new products created": matcher.created,
            },
        )
    finally:
        engine.dispose()


def pipeline_url(url: str) -> str:
    """The URL as shown: password masked, connection options left out."""
    parsed = sa.make_url(url)
    return parsed.set(query={}).render_as_string(hide_password=True)
