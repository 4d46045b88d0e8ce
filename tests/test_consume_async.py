"""The asyncio API: ``await pipeline.arun(...)`` with an async map, and ``async with
pipeline.consumer(...)`` on a real Redis stream; the event loop never waits on the database."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import redis
import sqlalchemy as sa

import batchline as bl
from tests._brokers import create_orders, map_order, message, redis_url, unique

PRICES = {f"sku-{i}": 100 + i for i in range(50)}


async def price_of(sku: str) -> int:
    """Stands for an HTTP enrichment: it awaits."""
    await asyncio.sleep(0)
    return PRICES[sku]


async def enrich(record: dict[str, Any], out: bl.Out) -> None:
    price = await price_of(record["sku"])
    out.insert("priced", {"id": record["id"], "sku": record["sku"], "price": price})


def create_priced(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE priced (id INTEGER PRIMARY KEY, sku TEXT NOT NULL, price INTEGER)"
        )
    engine.dispose()


def test_arun_with_an_async_map_and_the_loop_never_waits_on_the_database(
    sqlite_url: str,
) -> None:
    create_priced(sqlite_url)
    pipeline = bl.Pipeline(sqlite_url, writes=[bl.Insert("priced")], chunk_size=100)
    slow = 0.15  # every statement takes this long: a database far away

    def far_away(sql: str, rows: int) -> None:
        time.sleep(slow)  # on the engine's threads, never on the loop

    pipeline.statement_listeners.append(far_away)

    async def orders() -> AsyncIterator[dict[str, Any]]:
        for i in range(500):
            if i % 100 == 0:
                await asyncio.sleep(0)
            yield {"id": i, "sku": f"sku-{i % 50}"}

    async def main() -> tuple[bl.Result, float]:
        gaps: list[float] = []
        running = True

        async def tick() -> None:
            last = time.monotonic()
            while running:
                await asyncio.sleep(0.01)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        ticker = asyncio.create_task(tick())
        result = await pipeline.arun(orders(), enrich, job="priced")
        running = False
        await ticker
        return result, max(gaps)

    result, worst_gap = asyncio.run(main())
    assert result.status == "success" and result.items_processed == 500
    assert result.chunks_committed == 5  # five flushes of several slow statements each
    assert worst_gap < slow / 2, worst_gap  # the loop ran on all along
    engine = sa.create_engine(sqlite_url)
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT id, sku, price FROM priced ORDER BY id").all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [
        (i, f"sku-{i % 50}", PRICES[f"sku-{i % 50}"]) for i in range(500)
    ]


def test_arun_linger_flushes_a_trickling_async_iterable(sqlite_url: str) -> None:
    create_orders(sqlite_url)
    pipeline = bl.Pipeline(sqlite_url, writes=[bl.Insert("orders")])

    async def trickle() -> AsyncIterator[dict[str, Any]]:
        for i in range(15):
            await asyncio.sleep(0.05)
            yield {"id": i, "sku": "s", "qty": 1, "sent": time.time()}

    result = asyncio.run(pipeline.arun(trickle(), map_order, linger=0.1))
    assert result.items_processed == 15
    assert result.chunks_committed >= 3  # cut by linger, not only at the end
    engine = sa.create_engine(sqlite_url)
    with engine.connect() as conn:
        waits = [float(r[0]) for r in conn.exec_driver_sql("SELECT landed - sent FROM orders")]
    engine.dispose()
    assert max(waits) < 0.1 + 0.1, sorted(waits)[-3:]


def test_arun_linger_counts_from_a_chunks_first_record(sqlite_url: str) -> None:
    """A fast async iterable of 6,000 records in chunks of 400, linger 0.15 s (far longer
    than collecting a chunk, shorter than the run): every chunk is full. Timed from the
    first record after the last linger cut (as it was), the clock ran across chunks closed
    by size and cut one short every 0.15 s."""
    create_orders(sqlite_url)
    pipeline = bl.Pipeline(sqlite_url, writes=[bl.Insert("orders")], chunk_size=400)
    sizes: list[int] = []

    def chunk(result: bl.Result, failed: object) -> None:
        sizes.append(result.records_seen - sum(sizes))

    async def burst() -> AsyncIterator[dict[str, Any]]:
        for i in range(6000):
            yield {"id": i, "sku": "s", "qty": 1, "sent": 0.0}

    result = asyncio.run(pipeline.arun(burst(), map_order, linger=0.15, on_chunk=chunk))
    assert result.items_processed == 6000
    assert sizes == [400] * 15, sizes


def test_async_consumer_on_redis_with_an_async_map(sqlite_url: str) -> None:
    url = redis_url()
    create_priced(sqlite_url)
    client = redis.Redis.from_url(url)
    name = unique("bl-async")
    try:
        for i in range(300):
            body, _ = message(i * 300 + 1)  # good ones
            client.xadd(name, {"data": body})
        pipeline = bl.Pipeline(sqlite_url, writes=[bl.Insert("priced")])

        async def main() -> bl.AsyncConsumer:
            source = bl.RedisStreamSource(url, name, "loaders")
            async with pipeline.consumer(source, enrich, job="async") as c:
                assert await c.wait_acked(300, timeout=30)
            return c

        c = asyncio.run(main())
        assert c.result is not None and c.result.items_processed == 300
        assert client.xpending(name, "loaders")["pending"] == 0
    finally:
        client.delete(name)
        client.close()
    engine = sa.create_engine(sqlite_url)
    with engine.connect() as conn:
        ids = [r[0] for r in conn.exec_driver_sql("SELECT id FROM priced ORDER BY id")]
    engine.dispose()
    assert ids == [i * 300 + 1 for i in range(300)]
