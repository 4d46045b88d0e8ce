"""In-process data (Arrow tables, batches and readers; pandas and Polars DataFrames) as a
record source, batch by batch, with its schema as declared."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import Any

from ._errors import SourceError
from ._source_items import SourceItem, SourceRecord

__all__ = ["ArrowSource", "arrow_source", "microseconds"]

_PARQUET_BATCH = 8192


class ArrowSource:
    """In-process data (an Arrow table, batch or stream; a pandas or Polars DataFrame) as an
    iterable of records, batch by batch, with its schema as declared.

    pandas' missing values (NaN, None, NaT) are nulls here, as ``pyarrow.Table.from_pandas``
    reads them; the index is left out.
    """

    def __init__(self, data: Any) -> None:
        self.batches, self.schema = _arrow_batches(data)
        self._head: list[SourceItem] = []
        self._stream: Iterator[SourceItem] | None = None

    def sample(self, size: int) -> list[dict[str, Any]]:
        """Read the first ``size`` records ahead (iterating still yields them first)."""
        if self._stream is None:
            self._stream = self._items()
            self._head = list(itertools.islice(self._stream, size))
        return [item.data for item in self._head if isinstance(item, SourceRecord)]

    def __iter__(self) -> Iterator[SourceItem]:
        if self._stream is None:
            self._stream = self._items()
        head, self._head = self._head, []
        return itertools.chain(head, self._stream)

    @property
    def rereadable(self) -> bool:
        """Whether :attr:`batches` still starts at the first record (nothing read yet, or
        batches held in a list), so a run may read them as batches (``_arrow_write``)."""
        return self._stream is None or isinstance(self.batches, list)

    def _items(self) -> Iterator[SourceItem]:
        position = 0
        for batch in self.batches:
            for row in microseconds(batch).to_pylist():
                position += 1
                yield SourceRecord(position, position, row)


def microseconds(batch: Any) -> Any:
    """``batch`` with nanosecond timestamps (pandas' unit) cast to microseconds, SQL's unit,
    where no value has a nanosecond part; otherwise as it is (such a value is refused when
    coerced, never truncated)."""
    import pyarrow as pa
    import pyarrow.types as pt

    columns = list(batch.columns)
    changed = False
    for i, column in enumerate(columns):
        t = column.type
        if pt.is_timestamp(t) and t.unit == "ns":
            try:
                columns[i] = column.cast(pa.timestamp("us", t.tz))
                changed = True
            except pa.ArrowInvalid:
                pass
    if not changed:
        return batch
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)


def _arrow_batches(data: Any) -> tuple[Iterable[Any], Any]:
    import pyarrow as pa

    module = type(data).__module__.split(".")[0]
    try:
        if module == "pandas":
            data = pa.Table.from_pandas(data, preserve_index=False)
        elif module == "polars":
            data = data.to_arrow()
    except pa.ArrowException as exc:
        # a column of mixed Python objects has no Arrow type: say which, before any table
        raise SourceError(f"cannot read the {module} DataFrame as Arrow data: {exc}") from exc
    if isinstance(data, pa.Table):
        return data.to_batches(max_chunksize=_PARQUET_BATCH), data.schema
    if isinstance(data, pa.RecordBatch):
        return [data], data.schema
    if isinstance(data, pa.RecordBatchReader):
        return data, data.schema
    raise SourceError(f"cannot read a {type(data).__name__} as Arrow data")


def arrow_source(data: Any) -> ArrowSource | None:
    """``data`` as an :class:`ArrowSource` when it is a DataFrame or Arrow data, else None
    (a plain iterable of mappings is read as it is)."""
    module = type(data).__module__.split(".")[0]
    if module in ("pandas", "polars", "pyarrow") and not isinstance(data, (list, dict)):
        return ArrowSource(data)
    return None
