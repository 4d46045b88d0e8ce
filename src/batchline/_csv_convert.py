"""CSV text columns converted to the load's column kinds with Arrow compute, a column at a time.

Why: the row path coerces each value in Python (``_infer.coerce_record``), a few µs a
value. Here each text column of a block (``_csv_blocks``) is checked against a pattern of
the values ``coerce_record`` takes unchanged and Arrow converts to the very same value
(RE2, in C), and cast. Only the rows where some value does not match (a leading ``+``, a
space, ``1.500`` in a ``decimal(p,2)``, an outlier of the inferred kind, ``2023-02-30``) go
through ``coerce_record`` in Python, which either converts them (the row is added to the
batch) or refuses them with the row path's message (a dead letter at stage ``map``). So
what lands, and what is dead-lettered with which reason, is what the row path does.

Kinds with no exact Arrow form here (binary, JSON, a timestamp column coarser than
microseconds, and on SQLite zone-aware timestamps, whose text keeps each value's own offset)
make the chunk go the row path whole (``Converted.exact`` false). Elsewhere a zone-aware
timestamp becomes its UTC instant, as the row path stores it; a value with no offset sends
its chunk the row path (the database reads it in its session's zone).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from typing import Any

from ._arrow_values import bool_scalar, null_of, text_array
from ._column_spec import _MAX_PRECISION
from ._csv_blocks import META
from ._infer import ColumnSpec
from ._items import DeadRow, Failure

__all__ = ["Converted", "convert_block"]

_INTEGER = r"^-?[0-9]{1,18}$"
_FLOAT = r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"
_DATE = r"^(?:000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})-[0-9]{2}-[0-9]{2}$"
_TIMESTAMP = (
    r"^(?:000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})-[0-9]{2}-[0-9]{2}"
    r"[T ](?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,6})?$"
)
#: A zone-aware timestamp as Arrow and Python read it to the same instant: an explicit offset.
_TIMESTAMP_TZ = _TIMESTAMP.removesuffix("$") + r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$"
#: A text that ends in an offset, or is blank (else Python may read it as a naive time).
_OFFSET_END = r"(?i)^\s*$|(?:z|[+-][0-9]{2}(?::?[0-9]{2})?)\s*$"
_TRUE = ["true", "yes", "t", "y", "1"]
_FALSE = ["false", "no", "f", "n", "0"]


@dataclass
class Converted:
    """A block's records, converted: ``data`` holds the rows to write (in position order),
    ``failed`` the records that are dead letters already (unreadable, or a value that does
    not fit). ``exact`` is false when the chunk must go the row path whole."""

    data: Any = None
    failed: list[DeadRow] = field(default_factory=list)
    exact: bool = True


def convert_block(
    raw: Any,
    columns: Sequence[ColumnSpec],
    coerce: Callable[[dict[str, Any]], dict[str, Any]],
    *,
    empty_text: str,
    decimal_text: bool,
    zoned: bool = False,
) -> Converted:
    """Convert ``raw`` (text columns and :data:`META`, a ``pyarrow.Table``) to ``columns``.

    ``coerce(record)`` is the load's own coercion of one record (it raises ``ValueError``
    for a misfit, and counts it); ``decimal_text`` keeps decimals as their exact text
    (SQLite's ``DECIMAL_TEXT`` columns, which store ``str(Decimal)``); ``zoned`` converts a
    zone-aware timestamp column to UTC instants, as PostgreSQL and MySQL store its values
    (SQLite keeps each value's own offset in its text: there such a column goes the row
    path).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    names = [n for n in raw.schema.names if n not in META]
    specs = {c.name: c for c in columns}
    if any(n not in specs for n in names):
        return Converted(exact=False)  # the row path says "unexpected column", per record
    n = raw.num_rows
    error = raw.column(META[2])
    unread = pc.is_valid(error) if error.null_count < n else None
    arrays: list[Any] = []
    types: list[Any] = []
    slow: Any = None  # rows whose values Python must convert
    for spec in columns:
        column = raw.column(spec.name) if spec.name in specs and spec.name in names else None
        result = _convert(spec, column, n, empty_text, decimal_text, zoned)
        if result is None:
            return Converted(exact=False)
        array, misfit = result
        arrays.append(array)
        types.append(array.type)
        if misfit is not None:
            slow = misfit if slow is None else pc.or_(slow, misfit)
    zoned_names = [c.name for c in columns if c.kind == "timestamp" and c.timezone]
    out = Converted()
    bad = unread
    fixed: list[tuple[int, dict[str, Any]]] = []
    if unread is not None:
        for row in raw.filter(unread).select(list(META)).to_pylist():
            position, line, message, text = (row[m] for m in META)
            out.failed.append(DeadRow(position, line, text, Failure("read", "ReadError", message)))
        if slow is not None:
            slow = pc.and_(slow, pc.invert(unread))
    if slow is not None and pc.any(slow).as_py():
        for name in zoned_names:
            values = raw.column(name).filter(slow)
            if not pc.all(pc.match_substring_regex(values, _OFFSET_END)).as_py():
                # Python may read it as a naive time, which the database places in its
                # session's zone: only the row path leaves it that way
                return Converted(exact=False)
        bad = slow if bad is None else pc.or_(bad, slow)
        for row in raw.filter(slow).to_pylist():
            position, line = row.pop(META[0]), row.pop(META[1])
            del row[META[2]], row[META[3]]
            try:
                values = coerce(row)
            except ValueError as exc:
                why = Failure("map", type(exc).__name__, f"{type(exc).__name__}: {exc}")
                out.failed.append(DeadRow(position, line, row, why))
            else:
                fixed.append((position, values))
    schema = pa.schema([pa.field(c.name, t) for c, t in zip(columns, types)])
    data = pa.Table.from_arrays(arrays, schema=schema)
    if bad is not None:
        keep = pc.invert(pc.fill_null(bad, bool_scalar(False)))
        positions = raw.column(META[0]).filter(keep)
        data = data.filter(keep)
        if fixed:
            rows = [_fixed(values, columns, decimal_text) for _, values in fixed]
            extra = pa.Table.from_pylist(rows, schema=schema)
            data = pa.concat_tables([data, extra])
            positions = pa.concat_arrays(
                [positions.combine_chunks(), pa.array([p for p, _ in fixed], pa.int64())]
            )
            data = data.take(pc.sort_indices(positions))
    out.data = data
    out.failed.sort(key=lambda dead: dead.position)
    return out


def _fixed(values: dict[str, Any], columns: Sequence[ColumnSpec], text: bool) -> dict[str, Any]:
    """A record Python converted, as the batch's columns take it: a decimal as its text
    (``text``: SQLite's), else at the column's scale. ``coerce_record`` refused any value
    with more places, so the quantize is exact; Arrow cannot hold ``Decimal('0E+5')`` as
    it is (its exponent reads as more digits than the column's precision)."""
    for c in columns:
        value = values.get(c.name)
        if c.kind == "decimal" and value is not None:
            if text:
                values[c.name] = str(value)
            else:
                with localcontext() as context:
                    context.prec = 2 * _MAX_PRECISION  # (any NUMERIC(38, s), unrounded)
                    values[c.name] = value.quantize(Decimal(1).scaleb(-(c.scale or 0)))
    return values


def _convert(
    spec: ColumnSpec, column: Any, n: int, empty_text: str, decimal_text: bool, zoned: bool
) -> tuple[Any, Any] | None:
    """``column`` (text) as ``spec``'s Arrow type, and the mask of rows Python must convert
    (None: none); None when the kind has no exact Arrow form here."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = spec.kind
    target = _target(spec, decimal_text, zoned)
    if target is None:
        return None
    if column is None:  # a column the file lacks: NULL, as the row path binds it
        return pa.nulls(n, target), None
    if kind == "text":
        if empty_text == "null":
            column = pc.if_else(_empty(column), null_of(pa.string()), column)
        return column, None
    empty = _empty(column)
    column = pc.if_else(empty, null_of(pa.string()), column)  # NULL, as the row path
    if kind == "boolean":
        lowered = pc.utf8_lower(column)
        true = pc.is_in(lowered, text_array(_TRUE))
        valid = pc.or_(true, pc.is_in(lowered, text_array(_FALSE)))
        misfit = pc.and_(pc.is_valid(column), pc.invert(valid))
        return pc.if_else(valid, true, null_of(pa.bool_())), _none_if_clear(misfit)
    plain = not (kind == "decimal" and decimal_text) and not spec.timezone
    array = _plain_cast(kind, column, target) if plain else None
    if array is not None:
        misfit = None
    else:
        valid = pc.match_substring_regex(column, _pattern(spec, decimal_text))
        misfit = pc.invert(pc.fill_null(valid, bool_scalar(True)))
        cleared = pc.if_else(valid, column, null_of(pa.string()))
        try:
            array = cleared if kind == "decimal" and decimal_text else pc.cast(cleared, target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            # a value the pattern let through that Arrow refuses (2023-02-30): Python says why
            misfit = pc.is_valid(column)
            array = pa.nulls(n, target)
    if kind == "float" and (not spec.inf or not spec.nan):
        odd = pc.is_inf(array) if not spec.inf else pc.is_nan(array)
        odd = pc.fill_null(odd, bool_scalar(False))
        misfit = odd if misfit is None else pc.or_(misfit, odd)
    return array, None if misfit is None else _none_if_clear(misfit)


#: The bytes a column's text may hold for :func:`_plain_cast` to take Arrow's cast alone.
_PLAIN_BYTES = {
    "integer": b"0123456789-",
    "decimal": b"0123456789.-",
    "float": b"0123456789.eE+-",
}


def _plain_cast(kind: str, column: Any, target: Any) -> Any:
    """``column`` (text, empty fields null) cast to ``target`` when that alone is exact: when
    Arrow's cast takes every value and no value can be one Arrow reads differently from
    the row path (``coerce_record``); else None, and the caller checks each value against
    its kind's pattern (RE2, several times the cost).

    What Arrow's cast takes beyond each pattern, and why it is excluded or harmless: an
    integer in hex (``0x1F``; no ``x`` among the bytes allowed) or of 19 digits (longer
    than 18 bytes: the pattern's way); a decimal written ``.5``, ``5.`` or with more leading
    zeros than the column has digits (the row path reads the same number: ``Decimal`` is
    exact, and too many digits or places fail Arrow's cast as the row path's check); a
    float numeral is read to the nearest double by both (``inf``, ``nan`` have letters
    outside the bytes allowed); a date is read by Arrow only as ``YYYY-MM-DD``; a
    timestamp shorter than ``YYYY-MM-DD HH:MM:SS`` (Arrow takes ``2024-01-01 12``) is
    left to the pattern. ``tests/test_csv_convert.py`` checks this against the pattern on
    generated text."""
    import pyarrow as pa
    import pyarrow.compute as pc

    allowed = _PLAIN_BYTES.get(kind)
    if allowed is not None:
        chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
        for chunk in chunks:
            data = chunk.buffers()[2]
            if data is not None and data.to_pybytes().translate(None, allowed):
                return None
        if kind == "integer" and (pc.max(pc.binary_length(column)).as_py() or 0) > 18:
            return None
    elif kind == "timestamp":
        if (pc.min(pc.binary_length(column)).as_py() or 19) < 19:
            return None
    elif kind != "date":
        return None
    try:
        return pc.cast(column, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _empty(column: Any) -> Any:
    """Where ``column`` (text) holds ``''``: by its byte length, which reads only the
    offsets (comparing with a ``''`` scalar costs twenty times as much), cast to a boolean
    (no Python ``0`` to compare with: ``_arrow_values`` says why)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.invert(pc.cast(pc.binary_length(column), pa.bool_()))


def _none_if_clear(mask: Any) -> Any:
    import pyarrow.compute as pc

    return mask if pc.any(mask).as_py() else None


def _target(spec: ColumnSpec, decimal_text: bool, zoned: bool = False) -> Any:
    import pyarrow as pa

    kind = spec.kind
    if kind == "text":
        return pa.string()
    if kind == "integer":
        return pa.int64()
    if kind == "float":
        return pa.float64()
    if kind == "decimal":
        if decimal_text:
            return pa.string()
        precision, scale = spec.precision or 18, spec.scale or 0
        return pa.decimal128(precision, scale) if precision <= 38 else None
    if kind == "boolean":
        return pa.bool_()
    if kind == "date":
        return pa.date32()
    if kind == "timestamp" and spec.fraction is None:
        if spec.timezone:
            return pa.timestamp("us", tz="UTC") if zoned else None
        return pa.timestamp("us")
    return None  # binary, JSON, zone-aware or coarser timestamps: the row path


def _pattern(spec: ColumnSpec, decimal_text: bool) -> str:
    kind = spec.kind
    if kind == "integer":
        return _INTEGER
    if kind == "float":
        return _FLOAT
    if kind == "date":
        return _DATE
    if kind == "timestamp":
        return _TIMESTAMP_TZ if spec.timezone else _TIMESTAMP
    assert kind == "decimal"
    precision, scale = spec.precision or 18, spec.scale or 0
    digits = precision - scale
    fraction = rf"(?:\.[0-9]{{1,{scale}}})?" if scale else ""
    if decimal_text:
        # the text str(Decimal(text)) gives back unchanged: no leading zero, and at most six
        # fractional digits (str() writes the exponent form below 1E-6)
        whole = "0" if digits <= 0 else rf"(?:0|[1-9][0-9]{{0,{digits - 1}}})"
        short = min(scale, 6)
        fraction = rf"(?:\.[0-9]{{1,{short}}})?" if short else ""
        return rf"^-?{whole}{fraction}$"
    whole = "0" if digits <= 0 else rf"[0-9]{{1,{digits}}}"
    return rf"^-?{whole}{fraction}$"
