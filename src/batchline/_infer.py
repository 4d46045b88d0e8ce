"""Column types from sample data, and values coerced to them.

The CLI creates a missing table "from the data's types": it samples the first records, picks
the narrowest kind every non-empty value of a column fits, and coerces each record to those
kinds before the write. CSV values arrive as strings; JSON and Parquet values may already be
typed (int, float, bool, Decimal, date, datetime), and both are understood.

Inference is conservative: a value that would lose information in a narrower type keeps the
column as text (``"007"`` stays text; a 0/1 column stays integer, not boolean).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, localcontext
from itertools import islice
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

__all__ = ["KINDS", "ColumnSpec", "coerce_record", "infer_columns"]

KINDS = ("integer", "float", "decimal", "boolean", "date", "timestamp", "text")
"""The column kinds :func:`infer_columns` can choose."""

_INT64_MAX = 2**63 - 1
_MAX_PRECISION = 38  # the widest NUMERIC that every supported database accepts
_DEFAULT_PRECISION = 18
_MAX_DECIMAL_SCALE = 6  # more fractional digits than this looks like a measurement: float

_INT_RE = re.compile(r"[+-]?(?:0|[1-9][0-9]*)")
_DECIMAL_RE = re.compile(r"[+-]?(?:0|[1-9][0-9]*)?\.([0-9]+)")
_FLOAT_RE = re.compile(r"[+-]?(?:(?:0|[1-9][0-9]*)(?:\.[0-9]*)?|\.[0-9]+)[eE][+-]?[0-9]+")
# Coercion is more lenient than inference: leading zeros are fine once the column is numeric.
_ANY_INT_RE = re.compile(r"[+-]?[0-9]+")
_ANY_NUMBER_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_DATE_RE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_TIMESTAMP_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[T ]([0-9]{2}):([0-9]{2})"
    r"(?::([0-9]{2})(?:[.,]([0-9]{1,9}))?)?"
    r" ?(Z|[+-][0-9]{2}(?::?[0-9]{2})?)?",
    re.IGNORECASE,
)
_TRUE_WORDS = frozenset({"true", "yes"})
_FALSE_WORDS = frozenset({"false", "no"})
# Coercion into a boolean column also takes the usual short spellings and 0/1.
_TRUE_INPUT = _TRUE_WORDS | {"t", "y", "1"}
_FALSE_INPUT = _FALSE_WORDS | {"f", "n", "0"}


@dataclass(frozen=True)
class ColumnSpec:
    """A column's name and kind, enough to create it and to coerce values into it.

    Attributes:
        name: the column name, as in the records.
        kind: one of :data:`KINDS`.
        precision: total digits of a ``decimal`` column (None: the default, 18).
        scale: fractional digits of a ``decimal`` column (None: 0).
        timezone: whether a ``timestamp`` column holds zone-aware values.
    """

    name: str
    kind: str
    precision: int | None = None
    scale: int | None = None
    timezone: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown column kind {self.kind!r}; expected one of {KINDS}")

    def sa_type(self) -> sa.types.TypeEngine[Any]:
        """The SQLAlchemy type to create this column with."""
        if self.kind == "integer":
            return sa.BigInteger()
        if self.kind == "float":
            return sa.Float(53)
        if self.kind == "decimal":
            return sa.Numeric(self.precision or _DEFAULT_PRECISION, self.scale or 0)
        if self.kind == "boolean":
            return sa.Boolean()
        if self.kind == "date":
            return sa.Date()
        if self.kind == "timestamp":
            return sa.DateTime(timezone=self.timezone)
        # MySQL's TEXT holds 64 KiB; LONGTEXT holds what one statement can carry
        return sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")


class _Stats:
    """What one column's sample values looked like."""

    __slots__ = ("int_digits", "kinds", "scale", "tz_aware")

    def __init__(self) -> None:
        self.kinds: set[str] = set()
        self.int_digits = 0  # widest integer part seen among integer/decimal values
        self.scale = 0  # most fractional digits among decimal values
        self.tz_aware = False

    def add_digits(self, integer_part: int, scale: int) -> None:
        self.int_digits = max(self.int_digits, integer_part)
        self.scale = max(self.scale, scale)

    def observe(self, value: Any) -> None:
        # Order matters: bool is an int, datetime is a date.
        if isinstance(value, bool):
            self.kinds.add("boolean")
        elif isinstance(value, int):
            self.kinds.add("integer" if abs(value) <= _INT64_MAX else "decimal")
            self.add_digits(len(str(abs(value))), 0)
        elif isinstance(value, float):
            self.kinds.add("float")
        elif isinstance(value, Decimal):
            if not value.is_finite():
                self.kinds.add("float")
                return
            parts = value.as_tuple()
            assert isinstance(parts.exponent, int)  # finite, checked above
            self.kinds.add("decimal")
            self.add_digits(max(1, len(parts.digits) + parts.exponent), max(0, -parts.exponent))
        elif isinstance(value, datetime):
            self.kinds.add("timestamp")
            self.tz_aware = self.tz_aware or value.tzinfo is not None
        elif isinstance(value, date):
            self.kinds.add("date")
        elif isinstance(value, str):
            self.observe_text(value.strip())
        else:
            self.kinds.add("text")

    def observe_text(self, text: str) -> None:
        lowered = text.lower()
        if lowered in _TRUE_WORDS or lowered in _FALSE_WORDS:
            self.kinds.add("boolean")
        elif _INT_RE.fullmatch(text):
            self.observe(int(text))
        elif match := _DECIMAL_RE.fullmatch(text):
            scale = len(match.group(1))
            if scale > _MAX_DECIMAL_SCALE:
                self.kinds.add("float")
            else:
                self.kinds.add("decimal")
                integer = text.split(".")[0].lstrip("+-")
                self.add_digits(len(integer) or 1, scale)
        elif _FLOAT_RE.fullmatch(text):
            self.kinds.add("float")
        elif _DATE_RE.fullmatch(text) and _parse_date(text) is not None:
            self.kinds.add("date")
        elif (parsed := _parse_timestamp(text)) is not None:
            self.kinds.add("timestamp")
            self.tz_aware = self.tz_aware or parsed.tzinfo is not None
        else:
            self.kinds.add("text")

    def spec(self, name: str) -> ColumnSpec:
        kinds = self.kinds
        if not kinds or "text" in kinds:
            return ColumnSpec(name, "text")
        if len(kinds) == 1 and kinds <= {"boolean", "date", "integer"}:
            return ColumnSpec(name, next(iter(kinds)))
        if kinds <= {"date", "timestamp"}:
            return ColumnSpec(name, "timestamp", timezone=self.tz_aware)
        if kinds <= {"integer", "decimal"}:
            precision = self.int_digits + self.scale
            if precision > _MAX_PRECISION:
                return ColumnSpec(name, "text")
            return ColumnSpec(
                name, "decimal", precision=max(precision, _DEFAULT_PRECISION), scale=self.scale
            )
        if kinds <= {"integer", "decimal", "float"}:
            return ColumnSpec(name, "float")
        return ColumnSpec(name, "text")


def infer_columns(sample: Iterable[Mapping[str, Any]], *, max_rows: int = 1000) -> list[ColumnSpec]:
    """Choose a column kind for every key seen in the first ``max_rows`` records.

    Empty strings and None say nothing about the type (the column is nullable). Columns come
    out in the order their keys were first seen. See the module docstring for the rules.
    """
    stats: dict[str, _Stats] = {}
    for record in islice(sample, max_rows):
        for name, value in record.items():
            column = stats.get(name)
            if column is None:
                column = stats[name] = _Stats()
            if value is None or (isinstance(value, str) and not value.strip()):
                continue
            column.observe(value)
    return [column.spec(name) for name, column in stats.items()]


def coerce_record(data: Mapping[str, Any], columns: Sequence[ColumnSpec]) -> dict[str, Any]:
    """Convert one record's values to its columns' Python types, ready to be bound.

    Strings are parsed; values that already have a fitting type pass through. A missing key
    becomes None; an empty string becomes None except in text columns.

    Raises:
        ValueError: a value does not fit its column, or the record has a key no column has.
            The message names the column and the value.
    """
    names = {column.name for column in columns}
    for key in data:
        if key not in names:
            raise ValueError(f"unexpected column {key!r}")
    return {column.name: _coerce(column, data.get(column.name)) for column in columns}


def _coerce(column: ColumnSpec, value: Any) -> Any:
    if value is None:
        return None
    if column.kind == "text":
        if isinstance(value, str):
            return value
        if isinstance(value, (dict, list)):
            return json.dumps(value, default=str)
        return str(value)
    if isinstance(value, str):
        value = value.strip()
        if not value:
            return None
    try:
        return _CONVERTERS[column.kind](column, value)
    except (ValueError, ArithmeticError, TypeError) as exc:
        detail = str(exc) if isinstance(exc, _Misfit) else f"is not {_ARTICLE[column.kind]}"
        raise ValueError(f"column {column.name!r}: {value!r} {detail}") from None


class _Misfit(ValueError):
    """A value of the right sort that still does not fit (too many digits, say)."""


_ARTICLE = {
    "integer": "an integer",
    "float": "a number",
    "decimal": "a decimal number",
    "boolean": "a boolean",
    "date": "a date",
    "timestamp": "a timestamp",
}


def _to_integer(column: ColumnSpec, value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError
    if isinstance(value, int):
        result = value
    elif isinstance(value, float):
        if not value.is_integer():
            raise ValueError
        result = int(value)
    elif isinstance(value, Decimal):
        if not value.is_finite() or value != value.to_integral_value():
            raise ValueError
        result = int(value)
    elif isinstance(value, str) and _ANY_INT_RE.fullmatch(value):
        result = int(value)
    else:
        raise TypeError
    if abs(result) > _INT64_MAX:
        raise _Misfit("is too large for a 64-bit integer")
    return result


def _to_float(column: ColumnSpec, value: Any) -> float:
    if isinstance(value, bool):
        raise TypeError
    if isinstance(value, (int, float, Decimal)):
        return float(value)
    if isinstance(value, str) and _ANY_NUMBER_RE.fullmatch(value):
        return float(value)
    raise TypeError


def _to_decimal(column: ColumnSpec, value: Any) -> Decimal:
    if isinstance(value, bool):
        raise TypeError
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, float):
        result = Decimal(repr(value))
    elif isinstance(value, str) and _ANY_NUMBER_RE.fullmatch(value):
        result = Decimal(value)
    else:
        raise TypeError
    if not result.is_finite():
        raise ValueError
    scale = column.scale or 0
    precision = column.precision or _DEFAULT_PRECISION
    if abs(result) >= Decimal(10) ** (precision - scale):
        raise _Misfit(f"is too large for NUMERIC({precision}, {scale})")
    with localcontext() as context:
        context.prec = 2 * _MAX_PRECISION  # room for any NUMERIC(38, s) without rounding
        # Refuse rather than round: silently changing an amount is worse than a dead letter.
        if result != result.quantize(Decimal(1).scaleb(-scale)):
            raise _Misfit(f"has more than {scale} decimal places")
    return result


def _to_boolean(column: ColumnSpec, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        lowered = value.lower()
        if lowered in _TRUE_INPUT:
            return True
        if lowered in _FALSE_INPUT:
            return False
    raise TypeError


def _to_date(column: ColumnSpec, value: Any) -> date:
    if isinstance(value, datetime):
        if value.tzinfo is None and value.time() == datetime.min.time():
            return value.date()
        raise TypeError
    if isinstance(value, date):
        return value
    if isinstance(value, str) and _DATE_RE.fullmatch(value):
        parsed = _parse_date(value)
        if parsed is not None:
            return parsed
    raise TypeError


def _to_timestamp(column: ColumnSpec, value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    if isinstance(value, str):
        parsed = _parse_timestamp(value)
        if parsed is None and _DATE_RE.fullmatch(value):
            day = _parse_date(value)
            parsed = None if day is None else datetime(day.year, day.month, day.day)
        if parsed is not None:
            return parsed
    raise TypeError


_CONVERTERS: dict[str, Callable[[ColumnSpec, Any], Any]] = {
    "integer": _to_integer,
    "float": _to_float,
    "decimal": _to_decimal,
    "boolean": _to_boolean,
    "date": _to_date,
    "timestamp": _to_timestamp,
}


def _parse_date(text: str) -> date | None:
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def _parse_timestamp(text: str) -> datetime | None:
    """Parse ISO 8601 timestamps, including what Python 3.10's fromisoformat refuses (Z, ns)."""
    match = _TIMESTAMP_RE.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    tzinfo: timezone | None = None
    if zone is not None:
        if zone.upper() == "Z":
            tzinfo = timezone.utc
        else:
            digits = zone[1:].replace(":", "")
            hours, minutes = int(digits[:2]), int(digits[2:] or 0)
            if hours > 23 or minutes > 59:
                return None
            offset = timedelta(hours=hours, minutes=minutes)
            tzinfo = timezone(-offset if zone[0] == "-" else offset)
    try:
        return datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second or 0),
            int((fraction or "0")[:6].ljust(6, "0")),
            tzinfo=tzinfo,
        )
    except ValueError:
        return None
