"""``batchline load 'data/*.csv' --dask``: the single-process load, one file per Dask task.

Why a module of its own: before any partition runs, the files are listed, the load spec is
made (or checked against the job's, so a different load is refused before the table is made)
and the table is created from the first file's sample; this is the library's "files to a
table" path for Dask, shared with ``batchline._load``, and the command line only calls it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .._database import make_engine
from .._errors import JobSpecMismatch, SourceError
from .._sources import read_file
from ._partitions import MAX_JOB, expand_files
from ._result import DistributedResult
from ._run import run_partitions

if TYPE_CHECKING:
    from distributed import Client

    from .._infer import ColumnSpec

__all__ = ["load_files"]


def load_files(
    pattern: str | Sequence[str],
    *,
    db: str,
    table: str,
    spec: Mapping[str, Any] | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    client: Client | None = None,
    job: str | None = None,
    chunk_size: int | None = None,
    upsert_key: str | Sequence[str] | None = None,
    max_failures: int | float | None = None,
    retries: int = 3,
    timeout: float | None = None,
    restart: bool = False,
) -> DistributedResult:
    """Load every file ``pattern`` names into ``table``, one file per Dask task.

    This is ``batchline load 'data/*.csv' --table T --dask ADDRESS | --workers N``. The load
    is the one the single-process command does (the same spec, pipeline, coercion and
    idempotency key, from ``batchline._load``): the table is created on the client first
    if missing, from the column kinds inferred over the first 1000 records of the first file,
    and those kinds are stored in the spec every partition coerces with.

    Args:
        pattern: a glob (``data/*.csv``, ``data/**/*.jsonl``), a directory, or a list of files.
        db: the database URL.
        table: the target table.
        spec: the load spec as ``batchline load`` makes it (``_load.make_spec``: ``format``,
            ``mode``, ``key``, ``columns``, ``chunk_size``, ``idempotency_key``, ``fallback``,
            and ``schema`` once known); default: a plain insert.
        scheduler, workers, client, retries, timeout: as for :func:`run_partitions`.
        job: the base job name; by default one derived from the table and the files, so the
            same command again resumes (or skips) instead of loading twice.
        chunk_size: records per flush (overrides ``spec["chunk_size"]``).
        upsert_key: upsert on this key (overrides ``spec["mode"]`` and ``spec["key"]``).
        max_failures: per partition, as for :class:`~batchline.Pipeline`.
        restart: start every partition over, as for :func:`run_partitions`.

    Raises:
        SourceError: no file matches, or the table is missing and the first file is empty.
        ConfigError: the spec is inconsistent (a key that is not a column...).
        JobSpecMismatch: ``job`` was started with another table, mode, key or columns
            (checked before the table is made).
    """
    from .._dead_letters import DeadLetters
    from .._load import (
        idempotency_for_spec,
        make_spec,
        map_for_spec,
        pipeline_for_spec,
        resume_spec,
        sample_records,
        sample_source,
    )

    files = expand_files(pattern) if isinstance(pattern, str) else [os.fspath(p) for p in pattern]
    if not files:
        raise SourceError("no files to load")
    if spec is None:
        label = pattern if isinstance(pattern, str) else files[0]
        load = make_spec(file=label, format=None, table=table, mode="insert")
    else:
        load = dict(spec)
    load["table"] = table
    if chunk_size is not None:
        load["chunk_size"] = int(chunk_size)
    if upsert_key is not None:
        load["mode"] = "upsert"
        load["key"] = [upsert_key] if isinstance(upsert_key, str) else list(upsert_key)
    fmt = load.get("format")
    if job is None:
        digest = hashlib.sha256("\n".join(os.path.abspath(f) for f in files).encode())
        job = f"load-{table}-{digest.hexdigest()[:10]}"[:MAX_JOB]
    if not restart:
        # Every partition was started with the same load; the first one speaks for the job.
        with DeadLetters(db) as letters:
            first = letters.job(f"{job}/{0:05d}")
        try:
            resume_spec(first, load)
        except JobSpecMismatch as exc:
            raise JobSpecMismatch(job, exc.differences) from None
    from .._infer import columns_from_arrow

    first_file = read_file(files[0], fmt)
    sample = sample_records(sample_source(first_file))
    schema = first_file.arrow_schema()  # Parquet declares its types; they are used as declared
    declared = columns_from_arrow(schema) if schema is not None else None
    _ensure_table(db, load, sample, declared)  # fills load["schema"], the kinds coerced to
    pipeline = pipeline_for_spec(db, load, max_failures=max_failures)
    return run_partitions(
        pipeline,
        files,
        map_for_spec(load),
        job=job,
        idempotency_key=idempotency_for_spec(load),
        client=client,
        scheduler=scheduler,
        workers=workers,
        retries=retries,
        spec=load,
        format=fmt,
        timeout=timeout,
        restart=restart,
    )


def _ensure_table(
    db: str,
    spec: dict[str, Any],
    sample: Sequence[Mapping[str, Any]],
    declared: Sequence[ColumnSpec] | None = None,
) -> None:
    from .._load import ensure_table

    engine, _ = make_engine(db)
    try:
        ensure_table(engine, spec, sample, declared=declared)
    finally:
        engine.dispose()
