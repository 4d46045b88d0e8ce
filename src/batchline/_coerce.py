"""Values coerced to their column's kind, one record at a time (the row path of a load).

Strings are parsed, values that already have a fitting type pass through; a value that does
not fit raises ``ValueError`` naming the column (a dead letter at stage ``map``). Never
rounded: a value the column would change is refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, localcontext
from typing import Any, cast

from ._column_spec import _DEFAULT_PRECISION, _INT64_MAX, _MAX_PRECISION, ColumnSpec

__all__ = ["ValueMisfit", "coerce_record"]

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


def ValueMisfit(message: str, column: str) -> ValueError:
    """A value that does not fit its column: its record is dead-lettered at stage ``map``.

    A plain ``ValueError`` (dead letters name that class, as they always have), carrying the
    column's name as ``column`` so a load can count the outliers of each column.
    """
    exc = ValueError(message)
    exc.column = column  # type: ignore[attr-defined]
    return exc


def coerce_record(
    data: Mapping[str, Any], columns: Sequence[ColumnSpec], *, empty_text: str = "empty"
) -> dict[str, Any]:
    """Convert one record's values to its columns' Python types, ready to be bound.

    Strings are parsed; values that already have a fitting type pass through. A missing key
    becomes None; an empty (or blank) string becomes None in every column but a text one,
    where it stays ``''`` unless ``empty_text="null"``.

    Raises:
        ValueError: a value does not fit its column (the message names the column and the
            value, and says why; ``exc.column`` is the column), or the record has a key no
            column has.
    """
    names = {column.name for column in columns}
    for key in data:
        if key not in names:
            raise ValueError(f"unexpected column {key!r}")
    null_text = empty_text == "null"
    out = {}
    for column in columns:
        value = data.get(column.name)
        if null_text and value == "" and column.kind == "text":
            value = None
        out[column.name] = _coerce(column, value)
    return out


def _coerce(column: ColumnSpec, value: Any) -> Any:
    if value is None:
        return None
    if column.kind == "text":
        if isinstance(value, str):
            return _unicode(column, value)
        if isinstance(value, (dict, list)):
            return _unicode(column, json.dumps(value, default=str, ensure_ascii=False))
        if isinstance(value, (bytes, bytearray, memoryview)):
            try:
                return bytes(value).decode("utf-8")
            except UnicodeDecodeError:
                raise ValueMisfit(
                    f"column {column.name!r}: bytes {bytes(value)[:40]!r} are not UTF-8 text",
                    column.name,
                ) from None
        return str(value)
    if isinstance(value, str):
        value = value.strip()
        if not value:
            return None
    try:
        return _CONVERTERS[column.kind](column, value)
    except (ValueError, ArithmeticError, TypeError) as exc:
        detail = str(exc) if isinstance(exc, _Misfit) else f"is not {_ARTICLE[column.kind]}"
        raise ValueMisfit(f"column {column.name!r}: {value!r:.200} {detail}", column.name) from None


def _unicode(column: ColumnSpec, text: str) -> str:
    """``text``, when it is Unicode every database can store: not when it holds a lone
    surrogate (a JSON ``"\\ud800"``, or a Python string built so), which has no UTF-8 form.
    Let through, it failed the insert and then the dead letter holding it, and so the run."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        lone = text[exc.start]
        raise ValueMisfit(
            f"column {column.name!r}: a lone surrogate {lone!r} at character {exc.start} "
            "(not Unicode text)",
            column.name,
        ) from None
    return text


class _Misfit(ValueError):
    """A value of the right sort that still does not fit (too many digits, say)."""


_ARTICLE = {
    "integer": "an integer",
    "float": "a number",
    "decimal": "a decimal number",
    "boolean": "a boolean",
    "date": "a date",
    "timestamp": "a timestamp",
    "binary": "bytes",
    "json": "JSON",
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
    if not isinstance(value, (int, float, Decimal, str)):
        raise TypeError
    if isinstance(value, str) and not _ANY_NUMBER_RE.fullmatch(value):
        raise TypeError
    result = float(value)
    if result != result and not column.nan:
        raise _Misfit("is NaN, which this database's floating-point column cannot hold")
    if result in (_INF, -_INF) and not column.inf:
        raise _Misfit("is infinite, which this database's floating-point column cannot hold")
    return result


_INF = float("inf")


def _to_binary(column: ColumnSpec, value: Any) -> bytes:
    """Bytes as they are; text only in PostgreSQL's hex form (``\\x0001``)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str) and value[:2] in ("\\x", "\\X"):
        return bytes.fromhex(value[2:])
    raise TypeError


def _to_json(column: ColumnSpec, value: Any) -> str:
    """JSON text: lists and dicts are dumped; text must already be valid JSON."""
    if isinstance(value, (dict, list)):
        return _unicode(column, json.dumps(value, default=str, ensure_ascii=False))
    if isinstance(value, str):
        json.loads(value)  # raises ValueError when it is not JSON
        return _unicode(column, value)
    if isinstance(value, (bool, int, float)) and value == value:
        return json.dumps(value)
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


def _check_fraction(column: ColumnSpec, value: datetime) -> None:
    digits = column.fraction
    if digits is not None and digits < 6 and value.microsecond % 10 ** (6 - digits):
        raise _Misfit(
            f"has fractions of a second finer than the column keeps ({digits} digits); "
            "the database would change the value"
        )


def _to_timestamp(column: ColumnSpec, value: Any) -> datetime:
    if isinstance(value, datetime):
        if type(value) is not datetime:  # pandas.Timestamp: keeps nanoseconds SQL cannot
            if getattr(value, "nanosecond", 0):
                raise _Misfit("has nanoseconds; SQL timestamps keep microseconds")
            value = datetime.combine(value.date(), value.timetz())
        _check_fraction(column, value)
        return cast(datetime, value)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    if isinstance(value, str):
        parsed = _parse_timestamp(value)
        if parsed is not None:
            fraction = cast("re.Match[str]", _TIMESTAMP_RE.fullmatch(value)).group(7) or ""
            if fraction[6:].strip("0"):  # (parsed keeps the first six digits)
                raise _Misfit("has nanoseconds; SQL timestamps keep microseconds")
        if parsed is None and _DATE_RE.fullmatch(value):
            day = _parse_date(value)
            parsed = None if day is None else datetime(day.year, day.month, day.day)
        if parsed is not None:
            _check_fraction(column, parsed)
            return parsed
    raise TypeError


_CONVERTERS: dict[str, Callable[[ColumnSpec, Any], Any]] = {
    "integer": _to_integer,
    "float": _to_float,
    "decimal": _to_decimal,
    "boolean": _to_boolean,
    "date": _to_date,
    "timestamp": _to_timestamp,
    "binary": _to_binary,
    "json": _to_json,
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
