"""What ``batchline load`` and ``batchline dlq replay`` build: a load spec, its table, its pipeline.

A load is described by a small JSON-able *spec* (file, format, table, mode, key, columns,
chunk size, idempotency key, and the column kinds values are coerced to). The spec is stored
with the job, so ``dlq replay`` rebuilds the same pipeline and the same coercion later, and a
Dask run can rebuild it on every worker (:func:`pipeline_for_spec`, :func:`map_for_spec`).

Values are coerced to the column kinds inside the map function, so a value that does not
convert fails that record alone (stage ``map``, a dead letter), never the load.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from ._errors import ConfigError, JobSpecMismatch, SourceError
from ._infer import ColumnSpec, coerce_record, infer_columns
from ._out import Out
from ._pipeline import MapFunction, Pipeline
from ._sources import FileSource, SourceItem, SourceRecord
from ._spec import spec_differences
from ._state import JobState
from ._writes import Increment, Insert, Upsert, Write

__all__ = [
    "MODES",
    "SAMPLE_SIZE",
    "TrackedSource",
    "columns_from_spec",
    "ensure_table",
    "idempotency_for_spec",
    "make_spec",
    "map_for_spec",
    "pipeline_for_spec",
    "refresh_schema",
    "resume_spec",
    "sample_records",
    "sample_source",
]

MODES = ("insert", "upsert", "increment")
SAMPLE_SIZE = 1000
"""How many records the column kinds of a new table are inferred from."""


def make_spec(
    *,
    file: str,
    format: str | None,
    table: str,
    mode: str,
    key: Sequence[str] = (),
    columns: Sequence[str] = (),
    chunk_size: int | None = None,
    idempotency_key: Sequence[str] = (),
    fallback: str = "bisect",
    dead_letter_payload: str = "full",
    redact: Sequence[str] = (),
    dead_letter_keys: Sequence[str] = (),
) -> dict[str, Any]:
    """The load spec stored with the job; ``schema`` (column kinds) is added once known.

    With ``dead_letter_payload="keys"`` a letter keeps ``dead_letter_keys``, else the
    ``key`` columns, else the ``idempotency_key`` columns (see :func:`pipeline_for_spec`).
    """
    if mode not in MODES:
        raise ConfigError(f"unknown load mode {mode!r}; expected one of {', '.join(MODES)}")
    if mode in ("upsert", "increment") and not key:
        raise ConfigError(f"--{mode} needs --key")
    if mode == "increment" and not columns:
        raise ConfigError("--increment needs --columns (the columns to add up)")
    if dead_letter_keys and dead_letter_payload != "keys":
        raise ConfigError("--dead-letter-keys only applies with --dead-letter-payload keys")
    if dead_letter_payload == "keys" and not (dead_letter_keys or key or idempotency_key):
        raise ConfigError(
            "--dead-letter-payload keys needs the columns that identify a record: "
            "--dead-letter-keys, --key or --idempotency-key"
        )
    return {
        "command": "load",
        "file": file if file == "-" else os.path.abspath(file),
        "format": format,
        "table": table,
        "mode": mode,
        "key": list(key),
        "columns": list(columns),
        "chunk_size": chunk_size,
        "idempotency_key": list(idempotency_key),
        "fallback": fallback,
        "dead_letter_payload": dead_letter_payload,
        "redact": list(redact),
        "dead_letter_keys": list(dead_letter_keys),
    }


def _write_for(spec: Mapping[str, Any]) -> Write:
    table, mode = spec["table"], spec["mode"]
    if mode == "upsert":
        return Upsert(table, key=spec["key"])
    if mode == "increment":
        return Increment(table, key=spec["key"], columns=spec["columns"])
    return Insert(table)


def pipeline_for_spec(
    db: str | sa.Engine,
    spec: Mapping[str, Any],
    *,
    max_failures: int | float | None = None,
    fallback: str | None = None,
) -> Pipeline:
    """The pipeline a load spec describes: one write of its mode into its table."""
    payload = spec.get("dead_letter_payload") or "full"
    keys = None
    if payload == "keys":
        keys = spec.get("dead_letter_keys") or spec.get("key") or spec.get("idempotency_key")
    return Pipeline(
        db,
        writes=[_write_for(spec)],
        chunk_size=int(spec["chunk_size"]) if spec.get("chunk_size") else None,
        fallback=fallback or spec.get("fallback") or "bisect",
        max_failures=max_failures,
        dead_letter_payload=payload,
        redact=spec.get("redact") or (),
        dead_letter_keys=keys or None,
    )


def columns_from_spec(spec: Mapping[str, Any]) -> list[ColumnSpec]:
    """The column kinds stored in a spec (``spec["schema"]``)."""
    return [
        ColumnSpec(
            c["name"],
            c["kind"],
            precision=c.get("precision"),
            scale=c.get("scale"),
            timezone=bool(c.get("timezone", False)),
        )
        for c in spec.get("schema") or ()
    ]


def _schema_of(columns: Sequence[ColumnSpec]) -> list[dict[str, Any]]:
    return [
        {
            "name": c.name,
            "kind": c.kind,
            "precision": c.precision,
            "scale": c.scale,
            "timezone": c.timezone,
        }
        for c in columns
    ]


def map_for_spec(spec: Mapping[str, Any]) -> MapFunction:
    """The map function of a load: coerce the record to the spec's column kinds, write it.

    A value that does not convert raises ``ValueError``, which fails that record only
    (stage ``map``); its dead letter keeps the record as read, so a replay converts it anew.
    """
    table = spec["table"]
    columns = columns_from_spec(spec)

    def map_record(record: dict[str, Any], out: Out) -> None:
        out.write(table, coerce_record(record, columns))

    return map_record


def idempotency_for_spec(spec: Mapping[str, Any]) -> Callable[[dict[str, Any]], Any] | None:
    """``fn(record)`` giving the record's idempotency key, or None when the spec has none."""
    names = list(spec.get("idempotency_key") or ())
    if not names:
        return None

    def key(record: dict[str, Any]) -> Any:
        missing = [n for n in names if record.get(n) in (None, "")]
        if missing:
            raise ValueError(f"idempotency key column {missing[0]!r} is missing or empty")
        return tuple(str(record[n]) for n in names)

    return key


class TrackedSource(FileSource):
    """A file source whose first records were read ahead (to infer columns), counting as it goes.

    It replays the records read ahead, then goes on with the same stream, so standard input
    works too. ``on_item`` sees every item (progress); single use.
    """

    def __init__(
        self,
        inner: FileSource,
        head: Sequence[SourceItem],
        rest: Iterator[SourceItem],
        on_item: Callable[[SourceItem], None] | None = None,
    ) -> None:
        super().__init__(
            inner.path,
            inner.format,
            encoding=inner.encoding,
            delimiter=inner.delimiter,
            compressed=inner.compressed,
        )
        self.inner = inner
        self._head = list(head)
        self._rest = rest
        self.on_item = on_item

    def __iter__(self) -> Iterator[SourceItem]:
        on_item = self.on_item
        for item in itertools.chain(self._head, self._rest):
            if on_item is not None:
                on_item(item)
            yield item

    @property
    def bytes_read(self) -> int:
        return self.inner.bytes_read


def sample_source(source: FileSource, size: int = SAMPLE_SIZE) -> TrackedSource:
    """Read the first ``size`` items of ``source`` ahead; the result still yields all of them."""
    stream = iter(source)
    head = list(itertools.islice(stream, size))
    return TrackedSource(source, head, stream)


def sample_records(source: TrackedSource) -> list[dict[str, Any]]:
    """The records (not read failures) among those read ahead."""
    return [item.data for item in source._head if isinstance(item, SourceRecord)]


def _kind_of(column: Any) -> ColumnSpec:
    """The kind values are coerced to for a reflected column."""
    name, typ = column["name"], column["type"]
    if isinstance(typ, sa.Boolean) or (
        type(typ).__name__ == "TINYINT" and getattr(typ, "display_width", None) == 1
    ):
        return ColumnSpec(name, "boolean")
    if isinstance(typ, sa.Integer):
        return ColumnSpec(name, "integer")
    if isinstance(typ, sa.Float):
        return ColumnSpec(name, "float")
    if isinstance(typ, sa.Numeric):
        if typ.asdecimal is False:
            return ColumnSpec(name, "float")
        precision = typ.precision or 38
        return ColumnSpec(name, "decimal", precision=precision, scale=typ.scale or 0)
    if isinstance(typ, sa.DateTime):
        return ColumnSpec(name, "timestamp", timezone=bool(getattr(typ, "timezone", False)))
    if isinstance(typ, sa.Date):
        return ColumnSpec(name, "date")
    return ColumnSpec(name, "text")


def ensure_table(
    engine: sa.Engine, spec: dict[str, Any], sample: Sequence[Mapping[str, Any]]
) -> bool:
    """Create the spec's table from the sample's types when it is missing; fill ``spec["schema"]``.

    An existing table keeps its columns: values are coerced to their types, and a field the
    table has no column for is refused up front (one clear error, not a dead letter per row).
    Returns whether the table was created.

    Raises:
        SourceError: the table is missing and there is no record to infer it from, or the
            records have fields the table lacks.
        ConfigError: the key or increment columns are not among the columns.
    """
    table = spec["table"]
    seen: list[str] = []
    for record in sample:
        for name in record:
            if name not in seen:
                seen.append(name)
    inspector = sa.inspect(engine)
    created = False
    if inspector.has_table(table):
        reflected = inspector.get_columns(table)
        if spec.get("schema"):
            columns = columns_from_spec(spec)  # a resumed job keeps its first run's kinds
        else:
            known = {c["name"] for c in reflected}
            extra = [name for name in seen if name not in known]
            if extra:
                raise SourceError(
                    f"table {table} has no column {', '.join(map(repr, extra))} "
                    "(present in the input)"
                )
            wanted = set(seen) if seen else known
            columns = [_kind_of(c) for c in reflected if c["name"] in wanted]
    else:
        if not sample:
            raise SourceError(
                f"table {table} does not exist and the input has no record to infer its "
                "columns from"
            )
        columns = infer_columns(sample, max_rows=len(sample))
        _check_columns(spec, [c.name for c in columns])
        keys = set(spec["key"]) if spec["mode"] in ("upsert", "increment") else set()
        metadata = sa.MetaData()
        sa.Table(
            table,
            metadata,
            *[
                sa.Column(c.name, c.sa_type(), primary_key=c.name in keys, autoincrement=False)
                for c in columns
            ],
        )
        try:
            metadata.create_all(engine)
        except sa.exc.DBAPIError:
            if not sa.inspect(engine).has_table(table):
                raise
            # another runner of the same load created it a moment ago: use it as it is
            return ensure_table(engine, spec, sample)
        created = True
    _check_columns(spec, [c.name for c in columns])
    spec["schema"] = _schema_of(columns)
    return created


def refresh_schema(engine: sa.Engine, spec: dict[str, Any]) -> None:
    """Take the column kinds of ``spec["schema"]`` from the table as it is now.

    A replay runs after the cause was fixed, and the fix may be a new column type (a text
    column where a number did not fit): the records are converted to what the table holds
    now. A boolean stays boolean where the database stores it as a small integer (MySQL).
    """
    inspector = sa.inspect(engine)
    if not inspector.has_table(spec["table"]):
        return
    now = {c["name"]: _kind_of(c) for c in inspector.get_columns(spec["table"])}
    columns = []
    for column in columns_from_spec(spec):
        current = now.get(column.name)
        if current is None or (column.kind == "boolean" and current.kind == "integer"):
            columns.append(column)
        else:
            columns.append(current)
    spec["schema"] = _schema_of(columns)


def resume_spec(job: JobState | None, spec: dict[str, Any]) -> None:
    """Hold a load run again under an existing job to the load the job was started with.

    Called before the table is made, so that a changed command neither creates its table nor
    reports "0 processed" for a finished job. A resumed job coerces with its first run's
    column kinds, so those are taken into ``spec["schema"]``.

    Raises:
        JobSpecMismatch: the job was started with another table, mode, key, columns or
            idempotency key (the file is checked by its fingerprint when the run starts).
    """
    if job is None or not job.spec:
        return
    try:
        started = json.loads(job.spec)
    except ValueError:
        return
    if not isinstance(started, dict):
        return
    fingerprinted = job.fingerprint is not None and spec.get("file") != "-"
    differences = spec_differences(started, spec, fingerprinted=fingerprinted, ignore=("schema",))
    if differences:
        raise JobSpecMismatch(job.name, differences)
    if started.get("schema"):
        spec["schema"] = started["schema"]


def _check_columns(spec: Mapping[str, Any], names: Sequence[str]) -> None:
    for role, wanted in (("--key", spec["key"]), ("--columns", spec["columns"])):
        missing = [w for w in wanted if w not in names]
        if missing:
            raise ConfigError(
                f"{role} names {', '.join(map(repr, missing))}, which the input/table lacks "
                f"(columns: {', '.join(names)})"
            )
