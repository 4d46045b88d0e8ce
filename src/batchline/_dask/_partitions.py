"""What ``run_partitions`` is given, checked and split into partitions before any task runs.

Why a module of its own: every mistake found here (a name too long, an input that cannot be
partitioned, a map function that cannot be pickled) is cheaper and clearer on the client,
before a cluster is started, than inside Dask's serialization on a worker.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Sequence
from typing import Any

from .._errors import ConfigError, SourceError
from .._pipeline import Pipeline

__all__ = ["MAX_JOB", "check_picklable", "expand_files", "partitions_of"]

MAX_JOB = 240  # the jobs table holds 255 characters; "/00000" and a margin are added


def partitions_of(partitions: Any) -> tuple[str, list[Any]]:
    """Classify the input: ("files", paths) | ("delayed", Delayed parts) | ("records", lists)."""
    if isinstance(partitions, (str, os.PathLike)):
        return "files", expand_files(os.fspath(partitions))
    from dask.base import is_dask_collection

    if is_dask_collection(partitions):
        import dask.bag

        if isinstance(partitions, dask.bag.Bag):
            return "delayed", list(partitions.to_delayed())  # type: ignore[no-untyped-call]
        try:
            import dask.dataframe
        except ImportError:  # pragma: no cover - dask[dataframe] comes with the dask extra
            dataframe_type: tuple[type, ...] = ()
        else:
            dataframe_type = (dask.dataframe.DataFrame,)
        if isinstance(partitions, dataframe_type):
            frame: Any = partitions
            return "delayed", list(frame.to_delayed())
        raise ConfigError(
            f"cannot partition a {type(partitions).__name__}; pass a Dask bag or dataframe, "
            "a list of files or a glob"
        )
    if isinstance(partitions, Sequence):
        items = list(partitions)
        if all(isinstance(p, (str, os.PathLike)) for p in items):
            return "files", [os.fspath(p) for p in items]
        if all(isinstance(p, Iterable) and not isinstance(p, (str, bytes)) for p in items):
            return "records", [list(p) for p in items]
    raise ConfigError(
        f"cannot partition {type(partitions).__name__}; pass a Dask bag or dataframe, a list "
        "of files, a glob, or a list of record lists"
    )


def expand_files(pattern: str) -> list[str]:
    """The files a glob (or a directory) names, sorted so partition numbers are stable."""
    if os.path.isdir(pattern):
        pattern = os.path.join(pattern, "*")
    files = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
    if not files:
        raise SourceError(f"no files match {pattern!r}")
    return files


def check_picklable(pipeline: Pipeline, map: Any, key: Any) -> None:
    """Fail here, with a clear message, rather than inside Dask's serialization."""
    import cloudpickle  # type: ignore[import-untyped]  # comes with dask; no stubs

    if not isinstance(pipeline, Pipeline):
        raise ConfigError(f"run_partitions needs a Pipeline, got {type(pipeline).__name__}")
    cloudpickle.dumps(pipeline)  # raises ConfigError for a pipeline built on an Engine
    for what, obj in (("map function", map), ("idempotency_key", key)):
        try:
            cloudpickle.dumps(obj)
        except Exception as exc:
            raise ConfigError(
                f"the {what} cannot be sent to Dask workers ({type(exc).__name__}: {exc}); "
                "use a module-level function or a picklable callable"
            ) from exc
