"""Consumer metrics: Prometheus text (served over HTTP for the CLI) and OpenTelemetry, both
counting what the consumer committed, and nothing at all when off."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import urllib.request
from typing import Any

import redis
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import batchline as bl
from batchline._metrics import OpenTelemetryMetrics, PrometheusMetrics
from tests._brokers import create_orders, map_order, message, redis_url, unique


def publish(client: redis.Redis, name: str, n: int) -> None:
    pipe = client.pipeline(transaction=False)
    for i in range(n):
        pipe.xadd(name, {"data": message(i)[0]})
    pipe.execute()


def consume(url: str, name: str, db: str, n: int, metrics: Any, during: Any = None) -> bl.Consumer:
    """Consume ``n`` messages; ``during()`` runs once they are acked, before the stop."""
    pipeline = bl.Pipeline(db, writes=[bl.Insert("orders")])
    source = bl.RedisStreamSource(url, name, "g")
    consumer = bl.Consumer(pipeline, source, map_order, job="m", metrics=metrics)
    thread = threading.Thread(target=consumer.run)
    thread.start()
    try:
        assert consumer.wait_acked(n, timeout=60)
        if during is not None:
            during()
    finally:
        consumer.stop()
        thread.join(60)
    return consumer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_prometheus_counts_records_failures_by_stage_and_lag(sqlite_url: str) -> None:
    url = redis_url()
    create_orders(sqlite_url)
    client = redis.Redis.from_url(url)
    name = unique("bl-metrics")
    port = free_port()
    metrics = PrometheusMetrics(port, job="m", broker="redis")
    try:
        publish(client, name, 900)
        scraped: list[str] = []

        def scrape() -> None:
            address = f"http://127.0.0.1:{port}/metrics"
            with urllib.request.urlopen(address, timeout=10) as reply:
                scraped.append(reply.read().decode())

        consume(url, name, sqlite_url, 900, metrics, scrape)
        text = scraped[0]
    finally:
        metrics.close()
        client.delete(name)
        client.close()
    labels = 'broker="redis",job="m"'
    assert f"batchline_records_total{{{labels}}} 900.0" in text
    for stage, error_class in (("read", "ReadError"), ("map", "ValueError")):
        line = (
            f'batchline_failures_total{{broker="redis",error_class="{error_class}",job="m",'
            f'stage="{stage}"}}'
        )
        assert f"{line} 3.0" in text, text
    assert f"batchline_lag{{{labels}}} 0.0" in text  # asked of Redis when scraped
    assert f"batchline_commit_latency_seconds_count{{{labels}}}" in text
    assert f"batchline_chunk_records_sum{{{labels}}} 900.0" in text


def test_opentelemetry_counts_what_committed(sqlite_url: str) -> None:
    url = redis_url()
    create_orders(sqlite_url)
    client = redis.Redis.from_url(url)
    name = unique("bl-otel")
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    spans = InMemorySpanExporter()
    tracing = TracerProvider()
    tracing.add_span_processor(SimpleSpanProcessor(spans))
    try:
        publish(client, name, 600)
        metrics = OpenTelemetryMetrics(
            job="m", broker="redis", meter_provider=provider, tracer_provider=tracing
        )
        collected: list[Any] = []
        consume(url, name, sqlite_url, 600, metrics, lambda: collected.append(
            reader.get_metrics_data()
        ))  # fmt: skip
        data = collected[0]
    finally:
        provider.shutdown()
        client.delete(name)
        client.close()
    points: dict[str, Any] = {}
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                points[metric.name] = list(metric.data.data_points)
    assert sum(p.value for p in points["batchline.records"]) == 600
    assert sum(p.value for p in points["batchline.failures"]) == 6  # 2 of each kind
    assert points["batchline.lag"][0].value == 0
    assert sum(p.count for p in points["batchline.commit.latency"]) >= 1
    chunks = spans.get_finished_spans()  # one per committed chunk, arrival to commit
    assert {s.name for s in chunks} == {"batchline.chunk"}
    assert sum(s.attributes["batchline.records"] for s in chunks) == 600
    events = [e for s in chunks for e in s.events]
    assert (
        sorted(e.attributes["stage"] for e in events) == ["map"] * 2 + ["read"] * 2 + ["write"] * 2
    )
    assert all(s.end_time >= s.start_time for s in chunks)


def test_metrics_off_cost_nothing() -> None:
    """Without metrics= the consumer keeps no arrival times, and ``import batchline`` loads
    neither exporter's library."""
    pipeline = bl.Pipeline("sqlite://", writes=[bl.Insert("t")])
    consumer = bl.Consumer(pipeline, bl.RedisStreamSource("redis://x", "s", "g"), job="j")
    assert consumer._arrivals is None
    code = (
        "import sys, batchline; "
        "print([m for m in ('prometheus_client', 'opentelemetry', 'redis', 'nats', 'pika') "
        "if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
