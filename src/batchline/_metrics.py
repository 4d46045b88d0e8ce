"""Metrics of a broker consumer: OpenTelemetry, and Prometheus text for the CLI.

A long-running consumer must be observable: records, failures by stage and class, chunk
size, commit latency (a chunk's oldest message, from its arrival to its commit), retries,
and the broker's lag. Both exporters are optional extras (``batchline[metrics]``) and cost
nothing when off: a consumer without ``metrics=`` keeps no arrival times and installs no
callback; the libraries are imported only when an exporter is made.

Lag is asked of the broker when the metric is read (a Prometheus scrape, an OpenTelemetry
collection), never on the flush thread: Redis ``XINFO GROUPS`` (``lag``, Redis 7), the
JetStream consumer's ``num_pending``; for RabbitMQ the queue's ready messages as the
consumer's thread last asked them (at most a second ago; its connection is that thread's).

OpenTelemetry also gets a span per committed chunk (``batchline.chunk``), from its oldest
message's arrival to its commit, with the chunk's counts as attributes and an event per
dead letter (the first 20): a trace shows where a slow message waited.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ._result import FailedItem

__all__ = ["ConsumerMetrics", "OpenTelemetryMetrics", "PrometheusMetrics"]

_SPAN_EVENTS = 20
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0, 10.0)


class ConsumerMetrics:
    """What a consumer reports after each committed chunk; subclasses export it.

    ``lag`` is set by the consumer to a function asking the broker (None when it cannot).
    """

    def __init__(self) -> None:
        self.lag: Callable[[], int | None] = lambda: None

    def chunk(
        self,
        *,
        records: int,
        failed: Sequence[FailedItem],
        duplicates: int,
        retries: int,
        latency: float | None,
    ) -> None:
        """One committed chunk: ``records`` handled (landed, duplicate or dead-lettered),
        its dead letters, the retries it took, and its oldest message's arrival-to-commit
        seconds."""

    def close(self) -> None:
        """Stop serving."""


class PrometheusMetrics(ConsumerMetrics):
    """Prometheus metrics on their own registry, served as text on ``port``
    (``batchline consume --metrics-port``; 0 serves none, for :meth:`text`)."""

    def __init__(self, port: int = 0, *, job: str, broker: str, addr: str = "127.0.0.1") -> None:
        super().__init__()
        import prometheus_client as prom
        from prometheus_client.core import GaugeMetricFamily

        self._prom = prom
        registry = self.registry = prom.CollectorRegistry()
        labels = {"job": job, "broker": broker}
        names = list(labels)
        self._records = prom.Counter(
            "batchline_records", "Records handled (landed, duplicates, dead letters)", names,
            registry=registry,
        ).labels(**labels)  # fmt: skip
        self._duplicates = prom.Counter(
            "batchline_duplicates", "Records skipped as already applied", names,
            registry=registry,
        ).labels(**labels)  # fmt: skip
        self._failures = prom.Counter(
            "batchline_failures", "Dead-lettered records by stage and error class",
            [*names, "stage", "error_class"], registry=registry,
        )  # fmt: skip
        self._labels = labels
        self._retries = prom.Counter(
            "batchline_retries", "Chunk transactions retried after a transient failure",
            names, registry=registry,
        ).labels(**labels)  # fmt: skip
        self._chunk = prom.Histogram(
            "batchline_chunk_records", "Records per committed chunk", names,
            buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000), registry=registry,
        ).labels(**labels)  # fmt: skip
        self._latency = prom.Histogram(
            "batchline_commit_latency_seconds",
            "From a chunk's oldest message's arrival to the chunk's commit", names,
            buckets=_BUCKETS, registry=registry,
        ).labels(**labels)  # fmt: skip
        metrics = self

        class _Lag:
            def collect(self) -> Iterable[Any]:
                value = metrics.lag()
                gauge = GaugeMetricFamily(
                    "batchline_lag", "Messages in the broker not yet delivered", labels=names
                )
                if value is not None:
                    gauge.add_metric([job, broker], value)
                yield gauge

        registry.register(_Lag())
        self._server: Any = None
        if port:
            self._server, _ = prom.start_http_server(port, addr=addr, registry=registry)

    def chunk(
        self,
        *,
        records: int,
        failed: Sequence[FailedItem],
        duplicates: int,
        retries: int,
        latency: float | None,
    ) -> None:
        self._records.inc(records)
        self._duplicates.inc(duplicates)
        self._retries.inc(retries)
        self._chunk.observe(records)
        if latency is not None:
            self._latency.observe(latency)
        for f in failed:
            self._failures.labels(
                **self._labels, stage=f.stage, error_class=f.error_class or ""
            ).inc()

    def text(self) -> str:
        """The metrics in Prometheus' text format."""
        return str(self._prom.generate_latest(self.registry).decode())

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class OpenTelemetryMetrics(ConsumerMetrics):
    """OpenTelemetry instruments on ``meter_provider``, and a span per committed chunk on
    ``tracer_provider`` (default: the global ones, no-ops until the application installs
    an SDK)."""

    def __init__(
        self, *, job: str, broker: str, meter_provider: Any = None, tracer_provider: Any = None
    ) -> None:
        super().__init__()
        from opentelemetry import metrics as otel
        from opentelemetry import trace

        self._tracer = trace.get_tracer("batchline", tracer_provider=tracer_provider)

        meter = otel.get_meter("batchline", meter_provider=meter_provider)
        self._attrs = {"job": job, "broker": broker}
        self._records = meter.create_counter("batchline.records", unit="{record}")
        self._duplicates = meter.create_counter("batchline.duplicates", unit="{record}")
        self._failures = meter.create_counter("batchline.failures", unit="{record}")
        self._retries = meter.create_counter("batchline.retries", unit="{retry}")
        self._chunk = meter.create_histogram("batchline.chunk.records", unit="{record}")
        self._latency = meter.create_histogram("batchline.commit.latency", unit="s")
        metrics = self

        def lag(options: Any) -> Iterable[Any]:
            value = metrics.lag()
            if value is not None:
                yield otel.Observation(value, metrics._attrs)

        meter.create_observable_gauge("batchline.lag", callbacks=[lag], unit="{message}")

    def chunk(
        self,
        *,
        records: int,
        failed: Sequence[FailedItem],
        duplicates: int,
        retries: int,
        latency: float | None,
    ) -> None:
        attrs = self._attrs
        self._records.add(records, attrs)
        self._duplicates.add(duplicates, attrs)
        if retries:
            self._retries.add(retries, attrs)
        self._chunk.record(records, attrs)
        if latency is not None:
            self._latency.record(latency, attrs)
        for f in failed:
            self._failures.add(1, {**attrs, "stage": f.stage, "error_class": f.error_class or ""})
        now = time.time_ns()
        start = now if latency is None else now - int(latency * 1e9)
        span = self._tracer.start_span(
            "batchline.chunk",
            start_time=start,
            attributes={
                "batchline.job": attrs["job"],
                "batchline.broker": attrs["broker"],
                "batchline.records": records,
                "batchline.failed": len(failed),
                "batchline.duplicates": duplicates,
                "batchline.retries": retries,
            },
        )
        for f in failed[:_SPAN_EVENTS]:
            span.add_event(
                "dead letter",
                {"position": f.position, "stage": f.stage, "error_class": f.error_class or ""},
            )
        span.end(end_time=now)
