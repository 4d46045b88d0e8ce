"""JSON Lines columns (``_jsonl_blocks``) converted to the load's column kinds with Arrow compute.

Why: as for CSV (``_csv_convert``), a block's values are converted a column at a time, and
only the records Arrow cannot convert exactly go through ``coerce_record``. The columns
pyarrow read typed (int64, float64, bool) are already the values the row path binds; the
text ones are converted by ``_csv_convert``'s own column conversion (the same patterns and
casts). A record marked slow (read by the row reader), or whose value misfits, is coerced
in Python from ``json.loads`` of its line, exactly the dict the row path maps, and its dead
letter keeps that dict.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from ._arrow_values import bool_scalar
from ._csv_blocks import META
from ._csv_convert import Converted, _convert, _fixed
from ._infer import ColumnSpec
from ._items import DeadRow, Failure
from ._jsonl_blocks import SLOW

__all__ = ["convert_jsonl", "record_of"]


def record_of(row: dict[str, Any]) -> dict[str, Any]:
    """A JSON Lines batch row (its :data:`META` and :data:`SLOW` popped) as the row path
    reads it: ``json.loads`` of its line."""
    return dict(json.loads(row[META[3]]))


def convert_jsonl(
    raw: Any,
    columns: Sequence[ColumnSpec],
    coerce: Callable[[dict[str, Any]], dict[str, Any]],
    *,
    empty_text: str,
    decimal_text: bool,
    zoned: bool = False,
) -> Converted:
    """``raw`` (a ``_jsonl_blocks`` table) converted to ``columns``, as
    ``_csv_convert.convert_block`` converts CSV text (same arguments)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = raw.num_rows
    names = [c.name for c in columns]
    if [x for x in raw.schema.names if x not in META and x != SLOW] != names:
        return Converted(exact=False)
    arrays: list[Any] = []
    slow = raw.column(SLOW)
    for spec in columns:
        column = raw.column(spec.name)
        if pa.types.is_null(column.type):
            return Converted(exact=False)  # (no Arrow type for some column: all rows slow)
        if pa.types.is_string(column.type):
            result = _convert(spec, column, n, empty_text, decimal_text, zoned)
            if result is None:
                return Converted(exact=False)
            array, misfit = result
        elif spec.kind == "float" and (not spec.inf or not spec.nan):
            array = column
            odd = pc.is_inf(column) if not spec.inf else pc.is_nan(column)
            misfit = pc.fill_null(odd, bool_scalar(False))
        elif spec.kind in ("integer", "float", "boolean"):
            array, misfit = column, None
        else:
            return Converted(exact=False)  # (a kind with no Arrow type here: all rows slow)
        arrays.append(array)
        if misfit is not None:
            slow = pc.or_(slow, misfit)
    if any(c.kind == "timestamp" and c.timezone for c in columns) and pc.any(slow).as_py():
        # Python may read a value as a naive time, which the database places in its
        # session's zone: only the row path leaves it that way
        return Converted(exact=False)
    out = Converted()
    fixed: list[tuple[int, dict[str, Any]]] = []
    slow = pc.fill_null(slow, bool_scalar(False))
    for row in raw.filter(slow).select(list(META)).to_pylist():
        position, line, message, text = (row[m] for m in META)
        if message is not None:
            why = Failure("read", "ReadError", message)
            out.failed.append(DeadRow(position, line, text, why))
            continue
        record = json.loads(text)
        try:
            values = coerce(record)
        except ValueError as exc:
            why = Failure("map", type(exc).__name__, f"{type(exc).__name__}: {exc}")
            out.failed.append(DeadRow(position, line, json.loads(text), why))
        else:
            fixed.append((position, values))
    schema = pa.schema([pa.field(c.name, a.type) for c, a in zip(columns, arrays)])
    data = pa.Table.from_arrays(arrays, schema=schema)
    if pc.any(slow).as_py():
        keep = pc.invert(slow)
        data = data.filter(keep)
        if fixed:
            positions = raw.column(META[0]).filter(keep).combine_chunks()
            rows = [_fixed(values, columns, decimal_text) for _, values in fixed]
            try:
                extra = pa.Table.from_pylist(rows, schema=schema)
            except (UnicodeError, pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
                return Converted(exact=False)  # (a lone surrogate: the database says)
            data = pa.concat_tables([data, extra])
            order = pa.concat_arrays([positions, pa.array([p for p, _ in fixed], pa.int64())])
            data = data.take(pc.sort_indices(order))
    out.data = data
    return out
