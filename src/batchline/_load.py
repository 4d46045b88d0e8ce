"""Loading a file or in-process data into one table: the source, the table, the pipeline.

This is the library's load path, used by ``batchline load``, ``batchline dlq replay``,
:func:`batchline.load` and ``batchline.dask.load_files`` (the library never imports the CLI).
The spec lives in ``_load_spec``, the table's creation in ``_load_table``; this module reads
the source (sampling it for the kinds), and runs the pipeline.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import sqlalchemy as sa

from ._arrow_write import is_csv
from ._csv_blocks import csv_sample
from ._database import make_engine
from ._errors import ConfigError
from ._infer import (
    ColumnSpec,
    columns_from_arrow,
)
from ._load_spec import (
    MODES,
    LoadMap,
    columns_from_spec,
    idempotency_for_spec,
    make_spec,
    map_for_spec,
    pipeline_for_spec,
    resume_spec,
)
from ._load_table import ensure_table, refresh_schema, split_table
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


SAMPLE_SIZE = 10_000
"""How many records the column kinds of a new CSV/JSON table are inferred from."""


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

    def csv_blocks(self) -> Iterator[tuple[Any, bytes | None]]:
        return self.inner.csv_blocks()  # (so bytes_read counts them)


def sample_source(source: FileSource, size: int = SAMPLE_SIZE) -> TrackedSource:
    """Read the first ``size`` items of ``source`` ahead; the result still yields all of them."""
    stream = iter(source)
    head = list(itertools.islice(stream, size))
    return TrackedSource(source, head, stream)


def sample_records(source: TrackedSource) -> list[dict[str, Any]]:
    """The records (not read failures) among those read ahead."""
    return [item.data for item in source._head if isinstance(item, SourceRecord)]


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
    if isinstance(source, FileSource) and is_csv(source):
        # read ahead in C (its blocks); the run reads the file from its start again
        sample = csv_sample(source, SAMPLE_SIZE)
        declared, run_source = None, TrackedSource(source, [], iter(source))
    elif isinstance(source, FileSource):
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
