"""Loading a file or in-process data into one table: the spec, the table, the pipeline.

This is the library's load path, used by ``batchline load``, ``batchline dlq replay``,
:func:`batchline.load` and ``batchline.dask.load_files`` (the library never imports the CLI).

A load is described by a small JSON-able *spec* (file, format, table, mode, key, columns,
chunk size, idempotency key, type overrides, and the column kinds values are coerced to). The
spec is stored with the job, so ``dlq replay`` rebuilds the same pipeline and the same
coercion later, and a Dask run can rebuild it on every worker (:func:`pipeline_for_spec`,
:func:`map_for_spec`).

Values are coerced to the column kinds inside the map function, so a value that does not
convert fails that record alone (stage ``map``, a dead letter), never the load.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import sqlalchemy as sa

from ._database import make_engine
from ._errors import ConfigError, JobSpecMismatch, SourceError
from ._infer import (
    ColumnSpec,
    coerce_record,
    columns_from_arrow,
    infer_columns,
    parse_type,
)
from ._out import Out
from ._pipeline import Pipeline
from ._result import Result
from ._sources import (
    ArrowSource,
    FileSource,
    SourceItem,
    SourceRecord,
    arrow_source,
    read_file,
)
from ._spec import spec_differences
from ._state import JobState
from ._writes import Increment, Insert, Upsert, Write

__all__ = [
    "MODES",
    "SAMPLE_SIZE",
    "LoadMap",
    "PreparedLoad",
    "TrackedSource",
    "columns_from_spec",
    "ensure_table",
    "idempotency_for_spec",
    "load",
    "make_spec",
    "map_for_spec",
    "open_source",
    "pipeline_for_spec",
    "prepare_load",
    "refresh_schema",
    "resume_spec",
    "sample_records",
    "sample_source",
    "split_table",
]

MODES = ("insert", "upsert", "increment")
SAMPLE_SIZE = 10_000
"""How many records the column kinds of a new CSV/JSON table are inferred from."""
_KEY_LENGTH_MIN = 255  # a MySQL key column's VARCHAR is at least this wide...
_KEY_LENGTH_MAX = 768  # ...and at most this: 768 utf8mb4 characters fill InnoDB's 3072-byte key


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


def _schema_of(columns: Sequence[ColumnSpec]) -> list[dict[str, Any]]:
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
        try:
            row = coerce_record(record, self.columns, empty_text=self.empty_text)
        except ValueError as exc:
            column = getattr(exc, "column", None)
            if column is not None:
                seen = self.outliers.get(column)
                if seen is None:
                    self.outliers[column] = [1, str(exc).removeprefix(f"column {column!r}: ")]
                else:
                    seen[0] += 1
            raise
        out.write(self.table, row)

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
            quote=inner.quote,
            names=inner.names,
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

    def fingerprint(self) -> str | None:
        return self.inner.fingerprint()

    def arrow_schema(self) -> Any:
        return self.inner.arrow_schema()

    def parquet_batches(self) -> Iterator[Any]:
        return self.inner.parquet_batches()  # (so bytes_read counts them)


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
        # MySQL's DATETIME keeps fsp digits (none unless declared), PostgreSQL's timestamp(p)
        # keeps p (six unless declared): a finer value would be rounded or cut silently
        fraction = (typ.fsp or 0) if hasattr(typ, "fsp") else getattr(typ, "precision", None)
        return ColumnSpec(
            name,
            "timestamp",
            timezone=bool(getattr(typ, "timezone", False)),
            fraction=fraction if isinstance(fraction, int) and fraction < 6 else None,
        )
    if isinstance(typ, sa.Date):
        return ColumnSpec(name, "date")
    if isinstance(typ, sa.types._Binary):  # BLOB, BYTEA, LONGBLOB, VARBINARY
        return ColumnSpec(name, "binary")
    if isinstance(typ, sa.JSON):
        return ColumnSpec(name, "json")
    return ColumnSpec(name, "text")


def split_table(name: str) -> tuple[str | None, str]:
    """``schema.table`` as (schema, table); a bare name has no schema (None)."""
    schema, _, table = name.rpartition(".")
    return schema or None, table


def _fit_to(engine: sa.Engine, columns: list[ColumnSpec]) -> list[ColumnSpec]:
    """What the database's columns can hold: NaN/±inf on SQLite and MySQL are refused (so
    dead-lettered with the reason) rather than stored as NULL or failing the statement."""
    name = engine.dialect.name
    if name not in ("sqlite", "mysql", "mariadb"):
        return columns
    inf = name == "sqlite"  # SQLite's REAL holds ±inf; MySQL's DOUBLE holds neither
    return [dataclasses.replace(c, nan=False, inf=inf) if c.kind == "float" else c for c in columns]


def _key_length(sample: Sequence[Mapping[str, Any]], column: str, share: int = 1) -> int:
    """A MySQL text key's VARCHAR length: room for the sample's longest value, twice over,
    within its ``share`` (how many text columns the key has) of InnoDB's 3072-byte key."""
    longest = max((len(str(r.get(column) or "")) for r in sample), default=0)
    most = _KEY_LENGTH_MAX // max(1, share)
    return min(most, max(_KEY_LENGTH_MIN, 2 * longest))


def _creation_columns(
    engine: sa.Engine,
    spec: Mapping[str, Any],
    sample: Sequence[Mapping[str, Any]],
    declared: Sequence[ColumnSpec] | None,
) -> list[ColumnSpec]:
    """The columns of a table the load creates: declared (Arrow) or inferred, then the
    ``--type`` overrides, then what the dialect needs (key lengths on MySQL)."""
    if declared is not None:
        columns = list(declared)
    else:
        if not sample:
            raise SourceError(
                f"table {spec['table']} does not exist and the input has no record to infer "
                "its columns from"
            )
        columns = infer_columns(sample, max_rows=len(sample))
    overrides = dict(spec.get("types") or {})
    unknown = [n for n in overrides if n not in {c.name for c in columns}]
    if unknown:
        raise ConfigError(
            f"--type names {', '.join(map(repr, unknown))}, which the input lacks "
            f"(columns: {', '.join(c.name for c in columns)})"
        )
    columns = [parse_type(c.name, overrides[c.name]) if c.name in overrides else c for c in columns]
    keys = set(spec["key"]) if spec["mode"] in ("upsert", "increment") else set()
    dialect = engine.dialect.name
    if dialect in ("mysql", "mariadb"):
        text_keys = [c.name for c in columns if c.name in keys and c.kind == "text"]
        columns = [
            dataclasses.replace(c, length=_key_length(sample, c.name, len(text_keys)))
            if c.name in text_keys and c.length is None
            else c
            for c in columns
        ]
    if dialect == "sqlite" and spec["mode"] == "increment":
        inexact = [c.name for c in columns if c.name in spec["columns"] and c.kind == "decimal"]
        if inexact:
            raise ConfigError(
                f"SQLite cannot add decimals exactly (column {inexact[0]!r}): its arithmetic "
                "is floating point, and batchline stores decimals there as exact text. Pass "
                f"--type {inexact[0]}=float to add them as floating point, or load into "
                "PostgreSQL or MySQL/MariaDB"
            )
    return columns


def ensure_table(
    engine: sa.Engine,
    spec: dict[str, Any],
    sample: Sequence[Mapping[str, Any]],
    *,
    declared: Sequence[ColumnSpec] | None = None,
) -> bool:
    """Create the spec's table when it is missing; fill ``spec["schema"]``.

    A new table takes ``declared`` column kinds when the source declares them (Parquet,
    Arrow, DataFrames), else kinds inferred from ``sample``; ``spec["types"]`` overrides
    either. ``schema.table`` creates the table in that schema (PostgreSQL) or database
    (MySQL), which must exist. An existing table keeps its columns: values are coerced to
    their types, and a field the table has no column for is refused up front (one clear
    error, not a dead letter per row). Returns whether the table was created.

    Raises:
        SourceError: the table is missing and there is no record to infer it from, or the
            records have fields the table lacks, or the schema does not exist.
        ConfigError: the key, increment or ``--type`` columns are not among the columns.
    """
    table = spec["table"]
    schema, name = split_table(table)
    seen: list[str] = [c.name for c in declared] if declared is not None else []
    for record in sample:
        for column in record:
            if column not in seen:
                seen.append(column)
    inspector = sa.inspect(engine)
    if schema is not None and schema not in inspector.get_schema_names():
        raise SourceError(f"no schema {schema!r} for table {table} (create it first)")
    created = False
    if inspector.has_table(name, schema=schema):
        reflected = inspector.get_columns(name, schema=schema)
        if spec.get("schema"):
            columns = columns_from_spec(spec)  # a resumed job keeps its first run's kinds
        else:
            known = {c["name"] for c in reflected}
            extra = [field for field in seen if field not in known]
            if extra:
                raise SourceError(
                    f"table {table} has no column {', '.join(map(repr, extra))} "
                    "(present in the input)"
                )
            wanted = set(seen) if seen else known
            columns = [_kind_of(c) for c in reflected if c["name"] in wanted]
    else:
        columns = _creation_columns(engine, spec, sample, declared)
        _check_columns(spec, [c.name for c in columns])
        keys = set(spec["key"]) if spec["mode"] in ("upsert", "increment") else set()
        metadata = sa.MetaData()
        sa.Table(
            name,
            metadata,
            *[
                sa.Column(c.name, c.sa_type(), primary_key=c.name in keys, autoincrement=False)
                for c in columns
            ],
            schema=schema,
        )
        try:
            metadata.create_all(engine)
        except sa.exc.DBAPIError:
            if not sa.inspect(engine).has_table(name, schema=schema):
                raise
            # another runner of the same load created it a moment ago: use it as it is
            return ensure_table(engine, spec, sample, declared=declared)
        created = True
    _check_columns(spec, [c.name for c in columns])
    spec["schema"] = _schema_of(_fit_to(engine, columns))
    return created


def refresh_schema(engine: sa.Engine, spec: dict[str, Any]) -> None:
    """Take the column kinds of ``spec["schema"]`` from the table as it is now.

    A replay runs after the cause was fixed, and the fix may be a new column type (a text
    column where a number did not fit): the records are converted to what the table holds
    now. A boolean stays boolean where the database stores it as a small integer (MySQL), and
    a decimal stays decimal where SQLite stores it as exact text.
    """
    inspector = sa.inspect(engine)
    schema, name = split_table(spec["table"])
    if not inspector.has_table(name, schema=schema):
        return
    now = {c["name"]: _kind_of(c) for c in inspector.get_columns(name, schema=schema)}
    sqlite = engine.dialect.name == "sqlite"
    columns = []
    for column in columns_from_spec(spec):
        current = now.get(column.name)
        if (
            current is None
            or (column.kind == "boolean" and current.kind == "integer")
            # SQLite's DECIMAL_TEXT reflects as text: still checked as the decimal it holds
            or (sqlite and column.kind == "decimal" and current.kind == "text")
        ):
            columns.append(column)
        else:
            columns.append(current)
    spec["schema"] = _schema_of(_fit_to(engine, columns))


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


# -- the load itself: file or in-process data -> table -> pipeline ------------------------------


@dataclass
class PreparedLoad:
    """A load ready to run: its source (first records read ahead), spec, pipeline and map.

    The table exists and ``spec["schema"]`` holds the kinds values are coerced to. Run it
    with :meth:`run`; a caller with a progress display (the CLI) runs ``pipeline`` itself.
    """

    source: Any
    spec: dict[str, Any]
    pipeline: Pipeline
    map: LoadMap
    created: bool
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("batchline"))

    def run(
        self,
        *,
        job: str | None = None,
        restart: bool = False,
        wait: bool | float = False,
        on_chunk: Any = None,
    ) -> Result:
        """Run the load; each column whose values did not all fit is logged once (WARNING)."""
        with self.pipeline as pipeline:
            result = pipeline.run(
                self.source,
                self.map,
                job=job,
                idempotency_key=idempotency_for_spec(self.spec),
                restart=restart,
                spec=self.spec,
                on_chunk=on_chunk,
                wait=wait,
            )
        for line in self.map.outlier_lines():
            self.log.warning("%s", line)
        return result


def open_source(
    data: Any,
    *,
    format: str | None = None,
    encoding: str = "utf-8",
    delimiter: str | None = None,
    quote: str | None = None,
    sniff: bool = False,
    names: Sequence[str] | None = None,
) -> FileSource | ArrowSource | Iterable[Mapping[str, Any]]:
    """What a load reads: a path (or ``"-"``) becomes a file source, a DataFrame or Arrow
    data an :class:`ArrowSource`; anything else is taken as an iterable of mappings."""
    if isinstance(data, (FileSource, ArrowSource)):
        return data
    if isinstance(data, (str, os.PathLike)):
        return read_file(
            data,
            format,
            encoding=encoding,
            delimiter=delimiter,
            quote=quote,
            sniff=sniff,
            names=names,
        )
    arrow = arrow_source(data)
    if arrow is not None:
        return arrow
    return cast("Iterable[Mapping[str, Any]]", data)


def prepare_load(
    source: FileSource | ArrowSource | Iterable[Mapping[str, Any]],
    db: str | sa.Engine,
    spec: dict[str, Any],
    *,
    job: str | None = None,
    restart: bool = False,
    max_failures: int | float | None = None,
) -> PreparedLoad:
    """Read the first records ahead, hold a resumed job to its load, create the table.

    The table's kinds come from the source's Arrow schema where it declares one (Parquet,
    DataFrames, Arrow), else from the records read ahead; ``spec["types"]`` overrides both.

    Raises:
        JobSpecMismatch: ``job`` was started with another load (before the table is made).
        SourceError, ConfigError: as :func:`ensure_table` raises them.
    """
    from ._dead_letters import DeadLetters

    declared: list[ColumnSpec] | None = None
    run_source: Any
    if isinstance(source, FileSource):
        tracked = sample_source(source)
        sample = sample_records(tracked)
        schema = source.arrow_schema()
        declared = columns_from_arrow(schema) if schema is not None else None
        run_source = tracked
    elif isinstance(source, ArrowSource):
        sample = source.sample(SAMPLE_SIZE)
        declared = columns_from_arrow(source.schema)
        run_source = source
    else:
        stream = iter(source)
        head = list(itertools.islice(stream, SAMPLE_SIZE))
        sample = [dict(r) for r in head if isinstance(r, Mapping)]
        run_source = itertools.chain(head, stream)
    if job is not None and not restart:
        with DeadLetters(db) as letters:
            resume_spec(letters.job(job), spec)
    engine, owned = make_engine(db)
    try:
        created = ensure_table(engine, spec, sample, declared=declared)
    finally:
        if owned:
            engine.dispose()
    pipeline = pipeline_for_spec(db, spec, max_failures=max_failures)
    return PreparedLoad(run_source, spec, pipeline, map_for_spec(spec), created)


def load(
    data: Any,
    db: str | sa.Engine,
    *,
    table: str,
    schema: str | None = None,
    upsert: str | Sequence[str] | None = None,
    increment: str | Sequence[str] | None = None,
    columns: Sequence[str] = (),
    types: Mapping[str, str] | None = None,
    empty_text: str = "empty",
    format: str | None = None,
    encoding: str = "utf-8",
    delimiter: str | None = None,
    quote: str | None = None,
    sniff: bool = False,
    names: Sequence[str] | None = None,
    job: str | None = None,
    restart: bool = False,
    chunk_size: int | None = None,
    idempotency_key: Sequence[str] = (),
    max_failures: int | float | None = None,
    fallback: str = "bisect",
    wait: bool | float = False,
) -> Result:
    """Load a file or a DataFrame into ``table`` (created from the data's types if missing).

    The one-liner behind ``batchline load``, and what replaces ``df.to_sql``:
    ``bl.load(df, "postgresql://…", table="orders")``. ``data`` is a path (CSV, TSV, tbl,
    JSON Lines, JSON array, Parquet), a pandas or Polars DataFrame, an Arrow table, record
    batch or batch reader, or an iterable of mappings. Declared types (Parquet, Arrow,
    DataFrames) are used as declared; CSV/JSON types are inferred from the first 10,000
    records by what most values say, and the values that do not fit are dead-lettered
    (stage ``map``) with the reason. ``types={"col": "decimal(12,2)"}`` overrides.

    Args:
        schema: create/load ``schema.table`` (a PostgreSQL schema or MySQL database).
        upsert: insert-or-update on this key (column or columns).
        increment: add ``columns`` to the row with this key.
        empty_text: ``"null"`` stores an empty CSV field of a text column as NULL (in
            other columns an empty field is always NULL).
        format, encoding, delimiter, quote, sniff, names: how a file is read
            (:func:`batchline.read`).
        job, restart, wait: as for :meth:`Pipeline.run`; ``chunk_size``, ``max_failures``,
            ``fallback`` as for :class:`Pipeline`; ``idempotency_key``: columns.

    Returns:
        the run's :class:`Result`.
    """
    if upsert is not None and increment is not None:
        raise ConfigError("upsert and increment exclude each other")
    key = upsert if upsert is not None else increment
    keys = [key] if isinstance(key, str) else list(key or ())
    mode = "upsert" if upsert is not None else "increment" if increment is not None else "insert"
    label = os.fspath(data) if isinstance(data, (str, os.PathLike)) else "-"
    spec = make_spec(
        file=label,
        format=format,
        table=f"{schema}.{table}" if schema else table,
        mode=mode,
        key=keys,
        columns=columns,
        chunk_size=chunk_size,
        idempotency_key=idempotency_key,
        fallback=fallback,
        types=types,
        empty_text=empty_text,
    )
    source = open_source(
        data,
        format=format,
        encoding=encoding,
        delimiter=delimiter,
        quote=quote,
        sniff=sniff,
        names=names,
    )
    prepared = prepare_load(source, db, spec, job=job, restart=restart, max_failures=max_failures)
    return prepared.run(job=job, restart=restart, wait=wait)
