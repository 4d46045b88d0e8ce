"""Broker consumers: batchline against the naive consumer, and latency against linger.

For each broker (Redis Streams, NATS JetStream, RabbitMQ), with PostgreSQL behind the
latency proxy (0.5 ms each way by default):

- **throughput**: a backlog of ``--messages`` order messages, consumed by batchline's
  consumer (chunks, ack after commit), against the naive consumer (per message: one INSERT,
  its COMMIT, one ack) on ``--naive-messages``; and batchline's own file-load speed on the
  same rows (``Pipeline.run`` over a JSON Lines file of the same message bodies), the
  issue's "within 2x" yardstick, and that load again with an idempotency key (the ledger
  RabbitMQ's consumer needs, having no ordered position);
- **latency**: ``--rate`` messages a second for ``--seconds``, each stamped when published;
  the table's ``landed`` column is the database's clock at the insert; p50/p99 of
  landed - sent for each ``--lingers`` value.

    .venv/bin/python bench/consume.py                       # all three brokers
    .venv/bin/python bench/consume.py --brokers redis --messages 50000

Needs the brokers and PostgreSQL of the test setup (see the README), and ``batchline[streams]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import sqlalchemy as sa

import batchline as bl
from batchline._bench._proxy import LatencyProxy, proxied_url

TABLE = "bench_consume_orders"
PREFIX = "bench_consume_"


def body(i: int, sent: float = 0.0) -> bytes:
    return json.dumps({"id": i, "sku": f"sku-{i % 500}", "qty": 1 + i % 7, "sent": sent}).encode()


def map_order(record: dict[str, Any], out: bl.Out) -> None:
    out.insert(TABLE, record)


# -- brokers: publish a backlog, the naive consumer, a source for batchline ----------------------


class Redis:
    name = "redis"

    def __init__(self, url: str) -> None:
        import redis

        self.url = url
        self.client = redis.Redis.from_url(url)
        self.stream = f"bench-{uuid.uuid4().hex[:8]}"

    def publish(self, first: int, last: int, stamp: bool = False) -> None:
        pipe = self.client.pipeline(transaction=False)
        for i in range(first, last):
            pipe.xadd(self.stream, {"data": body(i, time.time() if stamp else 0.0)})
        pipe.execute()

    def source(self, group: str) -> bl.BrokerSource:
        return bl.RedisStreamSource(self.url, self.stream, group)

    def naive(self, n: int, insert: Callable[[dict[str, Any]], None]) -> None:
        c = self.client
        c.xgroup_create(self.stream, "naive", id="0")
        done = 0
        while done < n:
            reply = c.xreadgroup("naive", "naive", {self.stream: ">"}, count=1, block=1000)
            for entry_id, fields in reply[0][1] if reply else []:
                insert(json.loads(fields[b"data"]))
                c.xack(self.stream, "naive", entry_id)
                done += 1

    def close(self) -> None:
        self.client.delete(self.stream)
        self.client.close()


class Nats:
    name = "nats"

    def __init__(self, url: str) -> None:
        import nats

        self.url = url
        self.stream = f"bench-{uuid.uuid4().hex[:8]}"
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.nc = self.call(nats.connect(url))
        self.js = self.nc.jetstream()
        self.call(self.js.add_stream(name=self.stream, subjects=[self.stream]))

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(120)

    def publish(self, first: int, last: int, stamp: bool = False) -> None:
        async def send() -> None:
            acks = [
                await self.js.publish_async(self.stream, body(i, time.time() if stamp else 0.0))
                for i in range(first, last)
            ]
            await asyncio.gather(*acks)

        if hasattr(self.js, "publish_async"):
            self.call(send())
        else:
            for i in range(first, last):
                self.call(self.js.publish(self.stream, body(i, time.time() if stamp else 0.0)))

    def source(self, group: str) -> bl.BrokerSource:
        return bl.JetStreamSource(self.url, self.stream, group)

    def naive(self, n: int, insert: Callable[[dict[str, Any]], None]) -> None:
        sub = self.call(self.js.pull_subscribe(self.stream, durable="naive"))
        done = 0
        while done < n:
            for msg in self.call(sub.fetch(1, timeout=5)):
                insert(json.loads(msg.data))
                self.call(msg.ack())
                done += 1

    def close(self) -> None:
        self.call(self.js.delete_stream(self.stream))
        self.call(self.nc.close())
        self.loop.call_soon_threadsafe(self.loop.stop)


class Rabbit:
    name = "amqp"

    def __init__(self, url: str) -> None:
        import pika

        self.url = url
        self.queue = f"bench-{uuid.uuid4().hex[:8]}"
        self.connection = pika.BlockingConnection(pika.URLParameters(url))
        self.channel = self.connection.channel()
        self.channel.queue_declare(self.queue, durable=True)
        self.pika = pika

    def publish(self, first: int, last: int, stamp: bool = False) -> None:
        for i in range(first, last):
            props = self.pika.BasicProperties(message_id=f"m-{i}", delivery_mode=2)
            data = body(i, time.time() if stamp else 0.0)
            self.channel.basic_publish("", self.queue, data, props)
        self.connection.process_data_events(0)

    def source(self, group: str) -> bl.BrokerSource:
        return bl.RabbitSource(self.url, self.queue)

    def naive(self, n: int, insert: Callable[[dict[str, Any]], None]) -> None:
        self.channel.basic_qos(prefetch_count=1)
        done = 0
        for method, _props, data in self.channel.consume(self.queue, inactivity_timeout=5):
            if method is None:
                continue
            insert(json.loads(data))
            self.channel.basic_ack(method.delivery_tag)
            done += 1
            if done >= n:
                break
        self.channel.cancel()

    def close(self) -> None:
        self.channel.queue_delete(self.queue)
        self.connection.close()


BROKERS: dict[str, tuple[type[Any], str]] = {
    "redis": (Redis, "redis://127.0.0.1:6379/0"),
    "nats": (Nats, "nats://127.0.0.1:4222"),
    "amqp": (Rabbit, "amqp://guest:guest@127.0.0.1:5672/%2F"),
}


# -- the measures ---------------------------------------------------------------------------------


def reset(admin: sa.Engine) -> None:
    with admin.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {TABLE}")
        conn.exec_driver_sql(
            f"CREATE TABLE {TABLE} (id INTEGER, sku TEXT, qty INTEGER, sent DOUBLE PRECISION, "
            "landed DOUBLE PRECISION DEFAULT EXTRACT(EPOCH FROM clock_timestamp()))"
        )
        for t in ("jobs", "ledger", "dead_letters", "runners"):
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {PREFIX}{t}")
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {PREFIX}schema")


def pipeline(target: str) -> bl.Pipeline:
    return bl.Pipeline(target, writes=[bl.Insert(TABLE)], state_prefix=PREFIX)


def consume(target: str, broker: Any, n: int, *, linger: float = 0.2, during: Any = None) -> float:
    """Seconds from the consumer's start until ``n`` messages are acknowledged."""
    p = pipeline(target)
    consumer = bl.Consumer(p, broker.source("bl"), map_order, job="bench", linger=linger)
    thread = threading.Thread(target=consumer.run)
    start = time.perf_counter()
    thread.start()
    try:
        if during is not None:
            consumer.ready.wait(60)
            during()
        if not consumer.wait_acked(n, timeout=600):
            raise SystemExit(f"{broker.name}: only {consumer.acked} of {n} acknowledged")
        seconds = time.perf_counter() - start
    finally:
        consumer.stop()
        thread.join(120)
        p.close()
    return seconds


def latencies(admin: sa.Engine) -> list[float]:
    with admin.connect() as conn:
        rows = conn.exec_driver_sql(f"SELECT landed - sent FROM {TABLE}").all()  # noqa: S608
    return sorted(float(r[0]) for r in rows)


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--latency-ms", type=float, default=0.5)
    parser.add_argument("--brokers", default="redis,nats,amqp")
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--naive-messages", type=int, default=1_000)
    parser.add_argument("--rate", type=float, default=20.0, help="messages/s, latency part")
    parser.add_argument("--seconds", type=float, default=5.0, help="latency part duration")
    parser.add_argument("--lingers", default="50,200", help="linger values (ms) for latency")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    logging.getLogger("batchline").setLevel(logging.ERROR)
    results: list[dict[str, Any]] = []
    with ExitStack() as stack:
        admin = sa.create_engine(args.db, poolclass=sa.pool.NullPool)
        stack.callback(admin.dispose)
        u = admin.url
        target = args.db
        if args.latency_ms > 0:
            proxy = stack.enter_context(
                LatencyProxy(u.host or "127.0.0.1", u.port or 5432, args.latency_ms)
            )
            target = proxied_url(u, proxy.port)
        proxied = sa.create_engine(target, poolclass=sa.pool.NullPool)
        stack.callback(proxied.dispose)
        with proxied.connect() as conn:  # the round trip, as the bench reports it
            t = []
            for _ in range(20):
                s = time.perf_counter()
                conn.exec_driver_sql("SELECT 1").all()
                t.append(time.perf_counter() - s)
        rtt_ms = statistics.median(t) * 1000
        print(f"PostgreSQL through the proxy: SELECT 1 round trip {rtt_ms:.2f} ms", flush=True)
        print("load average: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()), flush=True)
        n, naive_n = args.messages, args.naive_messages

        # batchline's own file-load speed on the same rows: a JSON Lines file of the same
        # message bodies, read and parsed by bl.read as the consumer decodes messages
        reset(admin)
        folder = stack.enter_context(tempfile.TemporaryDirectory())
        path = Path(folder) / "orders.jsonl"
        path.write_bytes(b"\n".join(body(i) for i in range(n)) + b"\n")
        p = pipeline(target)
        start = time.perf_counter()
        p.run(bl.read(path), map_order)
        file_rate = n / (time.perf_counter() - start)
        p.close()
        print(f"file load (Pipeline.run, same rows): {file_rate:,.0f} records/s", flush=True)
        # the same with an idempotency key, what RabbitMQ's consumer pays for its ledger
        reset(admin)
        p = pipeline(target)
        start = time.perf_counter()
        p.run(bl.read(path), map_order, idempotency_key=lambda r: ("file", r["id"]))
        keyed_rate = n / (time.perf_counter() - start)
        p.close()
        print(f"file load with an idempotency key: {keyed_rate:,.0f} records/s", flush=True)

        for name in args.brokers.split(","):
            cls, url = BROKERS[name]
            # batchline, a backlog of n
            reset(admin)
            broker = cls(url)
            try:
                broker.publish(0, n)
                seconds = consume(target, broker, n)
            finally:
                broker.close()
            rate = n / seconds
            # naive: one insert, one commit, one ack per message
            reset(admin)
            broker = cls(url)
            try:
                broker.publish(0, naive_n)
                raw = proxied.raw_connection()
                raw.autocommit = True  # type: ignore[attr-defined]
                cur = raw.cursor()

                def insert(r: dict[str, Any], cur: Any = cur) -> None:
                    cur.execute(
                        f"INSERT INTO {TABLE} (id, sku, qty, sent) VALUES (%s, %s, %s, %s)",  # noqa: S608
                        (r["id"], r["sku"], r["qty"], r["sent"]),
                    )

                start = time.perf_counter()
                broker.naive(naive_n, insert)
                naive_rate = naive_n / (time.perf_counter() - start)
                raw.close()
            finally:
                broker.close()
            row: dict[str, Any] = {
                "broker": name,
                "messages": n,
                "batchline_per_s": round(rate),
                "naive_messages": naive_n,
                "naive_per_s": round(naive_rate),
                "x_naive": round(rate / naive_rate, 1),
                "x_file_load": round(rate / file_rate, 2),
                "x_keyed_file_load": round(rate / keyed_rate, 2),
            }
            print(
                f"{name}: batchline {rate:,.0f}/s, naive {naive_rate:,.0f}/s "
                f"({rate / naive_rate:.0f}x); {rate / file_rate:.2f}x the file load",
                flush=True,
            )
            # latency at a low rate, per linger
            for linger_ms in (int(x) for x in args.lingers.split(",")):
                reset(admin)
                broker = cls(url)
                count = int(args.rate * args.seconds)

                def trickle(broker: Any = broker, count: int = count) -> None:
                    def run() -> None:
                        for i in range(count):
                            broker.publish(i, i + 1, stamp=True)
                            time.sleep(1 / args.rate)

                    threading.Thread(target=run, daemon=True).start()

                try:
                    consume(target, broker, count, linger=linger_ms / 1000, during=trickle)
                finally:
                    broker.close()
                waits = latencies(admin)
                row[f"linger_{linger_ms}ms_p50_ms"] = round(pct(waits, 0.5) * 1000, 1)
                row[f"linger_{linger_ms}ms_p99_ms"] = round(pct(waits, 0.99) * 1000, 1)
                print(
                    f"{name}: {args.rate:g} msg/s, linger {linger_ms} ms: p50 "
                    f"{pct(waits, 0.5) * 1000:.0f} ms, p99 {pct(waits, 0.99) * 1000:.0f} ms",
                    flush=True,
                )
            results.append(row)
        reset(admin)
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {TABLE}")
    summary = {
        # other work on the machine moves every figure: say how busy it was
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "rtt_ms": round(rtt_ms, 2),
        "file_load_per_s": round(file_rate),
        "keyed_file_load_per_s": round(keyed_rate),
        "brokers": results,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    sys.exit(main())
