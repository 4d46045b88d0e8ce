"""A load's spec: what ``batchline load`` stores with its job, and what it rebuilds from it.

A load is described by a small JSON-able *spec* (file, format, table, mode, key, columns,
chunk size, idempotency key, type overrides, and the column kinds values are coerced to). The
spec is stored with the job, so ``dlq replay`` rebuilds the same pipeline and the same
coercion later, and a Dask run can rebuild it on every worker (:func:`pipeline_for_spec`,
:func:`map_for_spec`). Values are coerced to the column kinds inside the map function
(:class:`LoadMap`), so a value that does not convert fails that record alone (stage ``map``,
a dead letter), never the load.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from ._csv_convert import Converted, convert_block
from ._errors import ConfigError, JobSpecMismatch
from ._infer import (
    ColumnSpec,
    coerce_record,
    columns_from_arrow,
    parse_type,
)
from ._out import Out
from ._pipeline import Pipeline
from ._spec import spec_differences
from ._state_rows import JobState
from ._writes import Increment, Insert, Upsert, Write

__all__ = [
    "MODES",
    "LoadMap",
    "check_columns",
    "columns_from_spec",
    "idempotency_for_spec",
    "make_spec",
    "map_for_spec",
    "pipeline_for_spec",
    "resume_spec",
    "schema_of",
]


MODES = ("insert", "upsert", "increment")


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
    types: Mapping[str, str] | None = None,
    empty_text: str = "empty",
) -> dict[str, Any]:
    """The load spec stored with the job; ``schema`` (column kinds) is added once known.

    With ``dead_letter_payload="keys"`` a letter keeps ``dead_letter_keys``, else the
    ``key`` columns, else the ``idempotency_key`` columns (see :func:`pipeline_for_spec`).
    ``types`` overrides the kinds of a table the load creates (``{"qty": "integer"}``);
    ``empty_text="null"`` stores an empty field of a text column as NULL, not ``''``.
    """
    for name, text in (types or {}).items():
        try:
            parse_type(name, text)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    if empty_text not in ("empty", "null"):
        raise ConfigError(f"empty_text must be 'empty' or 'null', not {empty_text!r}")
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
        "types": dict(types or {}),
        "empty_text": "null" if empty_text == "null" else None,
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
            length=c.get("length"),
            nan=bool(c.get("nan", True)),
            inf=bool(c.get("inf", True)),
            fraction=c.get("fraction"),
        )
        for c in spec.get("schema") or ()
    ]


def schema_of(columns: Sequence[ColumnSpec]) -> list[dict[str, Any]]:
    return [
        {
            "name": c.name,
            "kind": c.kind,
            "precision": c.precision,
            "scale": c.scale,
            "timezone": c.timezone,
            "length": c.length,
            "nan": c.nan,
            "inf": c.inf,
            "fraction": c.fraction,
        }
        for c in columns
    ]


class LoadMap:
    """The map function of a load: coerce the record to the spec's column kinds, write it.

    A value that does not convert raises ``ValueError`` (with the column as ``column``), which fails
    that record only (stage ``map``); its dead letter keeps the record as read, so a replay
    converts it anew. The misfits are counted per column (:attr:`outliers`), so a load can
    say, once per column, how many values did not fit the kind most values said.
    """

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.table = spec["table"]
        self.columns = columns_from_spec(spec)
        self.empty_text = spec.get("empty_text") or "empty"
        #: column -> [how many values did not fit, the first such value's message]
        self.outliers: dict[str, list[Any]] = {}
        # A value the dead letters keep out (redact, keys/none payloads) stays out of here.
        self.show_values = (spec.get("dead_letter_payload") or "full") == "full" and not (
            spec.get("redact")
        )

    def __call__(self, record: dict[str, Any], out: Out) -> None:
        out.write(self.table, self.coerce(record))

    def coerce(self, record: dict[str, Any]) -> dict[str, Any]:
        """The record coerced to the columns' kinds; a misfit is counted, then raised."""
        try:
            return coerce_record(record, self.columns, empty_text=self.empty_text)
        except ValueError as exc:
            column = getattr(exc, "column", None)
            if column is not None:
                seen = self.outliers.get(column)
                if seen is None:
                    self.outliers[column] = [1, str(exc).removeprefix(f"column {column!r}: ")]
                else:
                    seen[0] += 1
            raise

    def arrow_convert(self, raw: Any, dialect: str) -> Converted:
        """A block of CSV text columns (``_csv_blocks``) converted to the columns' kinds
        with Arrow compute; the rows Arrow cannot convert exactly are coerced by
        :meth:`coerce` (see ``batchline._csv_convert``); a JSON Lines block
        (``_jsonl_blocks``) likewise (``batchline._jsonl_convert``)."""
        from ._jsonl_blocks import SLOW

        if SLOW in raw.schema.names:
            from ._jsonl_convert import convert_jsonl

            return convert_jsonl(
                raw,
                self.columns,
                self.coerce,
                empty_text=self.empty_text,
                decimal_text=dialect == "sqlite",
                zoned=dialect != "sqlite",
            )
        return convert_block(
            raw,
            self.columns,
            self.coerce,
            empty_text=self.empty_text,
            decimal_text=dialect == "sqlite",
            zoned=dialect != "sqlite",
        )

    def arrow_unchanged(self, data: Any) -> bool:
        """Whether :meth:`__call__` would emit every row of ``data`` (a ``pyarrow.Table``)
        as it is and fail none (see ``batchline._arrow_write.ArrowExact``), so the chunk
        can be written in bulk: the same columns, each of the kind its Arrow type declares
        (``columns_from_arrow``), with nothing to convert or refuse. Strings into text,
        integers, floats (no NaN or infinity the column cannot hold), decimals of the
        declared precision and scale, booleans, dates and timestamps of the declared zone
        (to the microsecond, into a column that keeps microseconds) pass unchanged through
        ``coerce_record``; anything else is converted or checked there, row by row."""
        import pyarrow.compute as pc
        import pyarrow.types as pt

        if data.schema.names != [c.name for c in self.columns]:
            return False
        declared = columns_from_arrow(data.schema)
        for spec, arrow, declared_field, column in zip(
            self.columns, declared, data.schema, data.columns, strict=True
        ):
            t = declared_field.type
            if (spec.kind, spec.precision, spec.scale, spec.timezone) != (
                arrow.kind,
                arrow.precision,
                arrow.scale,
                arrow.timezone,
            ):
                return False
            if spec.kind == "text":
                if not (pt.is_string(t) or pt.is_large_string(t)):
                    return False  # (time, duration...: made text by the map)
                if self.empty_text == "null" and pc.any(pc.equal(column, "")).as_py():
                    return False
            elif spec.kind == "integer":
                if not pt.is_integer(t):
                    return False
            elif spec.kind == "decimal":
                if not pt.is_decimal(t):
                    return False  # (uint64: a decimal(20, 0) column, bound as a Decimal)
            elif spec.kind == "float":
                if column.null_count == len(column):
                    continue
                if not spec.nan and pc.any(pc.is_nan(column)).as_py():
                    return False
                if not spec.inf and pc.any(pc.is_inf(column)).as_py():
                    return False
            elif spec.kind == "timestamp":
                if spec.fraction is not None and spec.fraction < 6:
                    return False
            elif spec.kind not in ("boolean", "date"):
                return False
        return True

    def outlier_lines(self) -> list[str]:
        """One line per column that had values outside its kind (dead-lettered at map)."""
        kinds = {c.name: c.describe() for c in self.columns}
        return [
            f"column {name!r} ({kinds.get(name, '?')}): {count:,} value"
            f"{'s' if count != 1 else ''} did not fit and "
            f"{'were' if count != 1 else 'was'} dead-lettered at stage map"
            + (f" (first: {first})" if self.show_values else "")
            for name, (count, first) in self.outliers.items()
        ]


def map_for_spec(spec: Mapping[str, Any]) -> LoadMap:
    """The map function of a load (a :class:`LoadMap`)."""
    return LoadMap(spec)


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


def check_columns(spec: Mapping[str, Any], names: Sequence[str]) -> None:
    for role, wanted in (("--key", spec["key"]), ("--columns", spec["columns"])):
        missing = [w for w in wanted if w not in names]
        if missing:
            raise ConfigError(
                f"{role} names {', '.join(map(repr, missing))}, which the input/table lacks "
                f"(columns: {', '.join(names)})"
            )
