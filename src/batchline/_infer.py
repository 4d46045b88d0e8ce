"""Column types from sample data or an Arrow schema, and values coerced to them.

A load creates a missing table "from the data's types". A Parquet file, an Arrow table or a
DataFrame declares its types, and those are used as declared (:func:`columns_from_arrow`).
CSV and JSON are inferred (:func:`infer_columns`): the first records are sampled and a
column takes the kind *most* of its values say, so one bad value in the sample does not turn a
numeric column into text (which would make every later record fail). The values that fit no
kind of the winning family are outliers: they are dead-lettered at stage ``map`` when reached,
with the reason, and the load goes on.

The rule: a family (numbers, timestamps, booleans, bytes, JSON) wins when at most 1% of the
column's sampled non-empty values (at least one value) and at most a third of them fall outside
it; within the numbers the widest kind present wins (integer < decimal < float), within the
timestamps date < timestamp. A value that would lose information in a narrower type keeps the
column as text whatever the others say (``"007"``); a 0/1 column stays integer, not boolean.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, localcontext
from itertools import islice
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql

__all__ = [
    "KINDS",
    "ColumnSpec",
    "ValueMisfit",
    "coerce_record",
    "columns_from_arrow",
    "infer_columns",
    "parse_type",
]

KINDS = ("integer", "float", "decimal", "boolean", "date", "timestamp", "text", "binary", "json")
"""The column kinds :func:`infer_columns` can choose."""

_INT64_MAX = 2**63 - 1
_MAX_PRECISION = 38  # the widest NUMERIC that every supported database accepts
_MAX_DECLARED_PRECISION = 65  # MySQL's DECIMAL limit (PostgreSQL takes 1000): Arrow's decimal256
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


class _DecimalText(sa.types.UserDefinedType):  # type: ignore[type-arg]
    """SQLite's decimal column: ``DECIMAL_TEXT(p, s)``, which has TEXT affinity.

    SQLite has no exact decimal type: a ``NUMERIC`` column turns ``12345678901234567.89``
    into a float (every digit past the 15th is lost). Declared with ``TEXT`` in its name the
    column keeps the value's exact text, and reads back digit for digit.
    """

    cache_ok = True

    def __init__(self, precision: int, scale: int) -> None:
        self.precision, self.scale = precision, scale

    def get_col_spec(self, **kw: Any) -> str:
        return f"DECIMAL_TEXT({self.precision}, {self.scale})"

    def bind_processor(self, dialect: Any) -> Any:
        return lambda value: None if value is None else str(value)

    def result_processor(self, dialect: Any, coltype: Any) -> Any:
        return lambda value: None if value is None else Decimal(str(value))


@dataclass(frozen=True)
class ColumnSpec:
    """A column's name and kind, enough to create it and to coerce values into it.

    Attributes:
        name: the column name, as in the records.
        kind: one of :data:`KINDS`.
        precision: total digits of a ``decimal`` column (None: the default, 18).
        scale: fractional digits of a ``decimal`` column (None: 0).
        timezone: whether a ``timestamp`` column holds zone-aware values.
        length: a ``text`` column's most characters, for a key on MySQL (whose index
            cannot take a ``TEXT`` column): created there as ``VARCHAR(length)``.
        nan: whether the database's column can hold NaN (SQLite's and MySQL's cannot:
            SQLite would store NULL, so such a value is dead-lettered instead).
        inf: whether it can hold ±infinity (MySQL's cannot).
        fraction: the fractional-second digits a ``timestamp`` column keeps, when fewer than
            six (an existing MySQL ``DATETIME`` keeps none): a finer value is refused, not
            rounded or cut. None: microseconds.
    """

    name: str
    kind: str
    precision: int | None = None
    scale: int | None = None
    timezone: bool = False
    length: int | None = None
    nan: bool = True
    inf: bool = True
    fraction: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown column kind {self.kind!r}; expected one of {KINDS}")

    def sa_type(self) -> sa.types.TypeEngine[Any]:
        """The SQLAlchemy type to create this column with (the README's table, per dialect)."""
        if self.kind == "integer":
            return sa.BigInteger()
        if self.kind == "float":
            return sa.Float(53)
        if self.kind == "decimal":
            precision, scale = self.precision or _DEFAULT_PRECISION, self.scale or 0
            return sa.Numeric(precision, scale).with_variant(
                _DecimalText(precision, scale), "sqlite"
            )
        if self.kind == "boolean":
            return sa.Boolean()
        if self.kind == "date":
            return sa.Date()
        if self.kind == "timestamp":
            # MySQL's DATETIME drops fractions of a second without a word; DATETIME(6) keeps
            # microseconds (zone-aware values are stored in UTC, see the MySQL dialect).
            return sa.DateTime(timezone=self.timezone).with_variant(
                mysql.DATETIME(fsp=6), "mysql", "mariadb"
            )
        if self.kind == "binary":
            return sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")
        if self.kind == "json":
            # SQLite: TEXT (a column declared JSON would have NUMERIC affinity)
            return (
                sa.Text()
                .with_variant(postgresql.JSONB(), "postgresql")
                .with_variant(mysql.JSON(), "mysql", "mariadb")
            )
        if self.length is not None:
            return sa.Text().with_variant(mysql.VARCHAR(self.length), "mysql", "mariadb")
        # MySQL's TEXT holds 64 KiB; LONGTEXT holds what one statement can carry
        return sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")

    def describe(self) -> str:
        """The kind as ``--type`` spells it: ``decimal(38,4)``, ``timestamptz``."""
        if self.kind == "decimal":
            return f"decimal({self.precision or _DEFAULT_PRECISION},{self.scale or 0})"
        if self.kind == "timestamp" and self.timezone:
            return "timestamptz"
        return self.kind


_TYPE_NAMES = {
    "int": "integer",
    "integer": "integer",
    "bigint": "integer",
    "float": "float",
    "double": "float",
    "real": "float",
    "decimal": "decimal",
    "numeric": "decimal",
    "bool": "boolean",
    "boolean": "boolean",
    "date": "date",
    "timestamp": "timestamp",
    "datetime": "timestamp",
    "timestamptz": "timestamp",
    "text": "text",
    "str": "text",
    "string": "text",
    "binary": "binary",
    "bytes": "binary",
    "blob": "binary",
    "json": "json",
}
_TYPE_RE = re.compile(r"\s*([a-z]+)\s*(?:\(\s*([0-9]+)\s*(?:,\s*([0-9]+)\s*)?\))?\s*")


def parse_type(name: str, text: str) -> ColumnSpec:
    """A ``--type col=TYPE`` override: ``integer``, ``float``, ``decimal(p,s)``, ``boolean``,
    ``date``, ``timestamp``, ``timestamptz``, ``text``, ``binary``, ``json`` (and the usual
    synonyms: ``int``, ``bigint``, ``double``, ``numeric``, ``datetime``, ``blob``...).

    Raises:
        ValueError: an unknown type, or sizes on a type that takes none.
    """
    match = _TYPE_RE.fullmatch(text.lower())
    kind = _TYPE_NAMES.get(match.group(1)) if match else None
    if match is None or kind is None:
        raise ValueError(
            f"unknown type {text!r} for column {name!r}; expected one of integer, float, "
            "decimal(p,s), boolean, date, timestamp, timestamptz, text, binary, json"
        )
    precision, scale = match.group(2), match.group(3)
    if kind == "decimal":
        p = int(precision) if precision else _DEFAULT_PRECISION
        sc = int(scale) if scale else 0
        if not 0 < p <= _MAX_DECLARED_PRECISION or sc > p:
            raise ValueError(f"type {text!r} for column {name!r}: need 0 < s <= p <= 65")
        return ColumnSpec(name, "decimal", precision=p, scale=sc)
    if precision is not None:
        if kind == "text":
            return ColumnSpec(name, "text", length=int(precision))
        raise ValueError(f"type {text!r} for column {name!r} takes no size")
    return ColumnSpec(name, kind, timezone=match.group(1) == "timestamptz")


def columns_from_arrow(schema: Any) -> list[ColumnSpec]:
    """Column kinds from an Arrow schema, as declared (the README's Arrow → SQL table).

    Integers become BIGINT (``uint64`` a ``decimal(20,0)``, its values may pass 2**63),
    floats double precision, ``decimal128/256(p,s)`` a decimal of that precision and scale
    (text beyond 65 digits, which MySQL cannot hold), timestamps keep their zone, binary
    becomes bytes, lists/structs/maps JSON; anything else (time of day, durations) is text.
    """
    import pyarrow.types as pt

    columns = []
    for field in schema:
        t = field.type
        if pt.is_dictionary(t):
            t = t.value_type
        name = field.name
        if pt.is_boolean(t):
            columns.append(ColumnSpec(name, "boolean"))
        elif pt.is_uint64(t):
            columns.append(ColumnSpec(name, "decimal", precision=20, scale=0))
        elif pt.is_integer(t):
            columns.append(ColumnSpec(name, "integer"))
        elif pt.is_floating(t):
            columns.append(ColumnSpec(name, "float"))
        elif pt.is_decimal(t):
            if t.precision > _MAX_DECLARED_PRECISION:
                columns.append(ColumnSpec(name, "text"))
            else:
                columns.append(ColumnSpec(name, "decimal", precision=t.precision, scale=t.scale))
        elif pt.is_timestamp(t):
            columns.append(ColumnSpec(name, "timestamp", timezone=t.tz is not None))
        elif pt.is_date(t):
            columns.append(ColumnSpec(name, "date"))
        elif pt.is_binary(t) or pt.is_large_binary(t) or pt.is_fixed_size_binary(t):
            columns.append(ColumnSpec(name, "binary"))
        elif (
            pt.is_list(t)
            or pt.is_large_list(t)
            or pt.is_fixed_size_list(t)
            or pt.is_struct(t)
            or pt.is_map(t)
        ):
            columns.append(ColumnSpec(name, "json"))
        else:  # strings, nulls, times of day, durations
            columns.append(ColumnSpec(name, "text"))
    return columns


_FAMILY = {
    "integer": "number",
    "decimal": "number",
    "float": "number",
    "date": "time",
    "timestamp": "time",
    "boolean": "boolean",
    "binary": "binary",
    "json": "json",
}


class _Stats:
    """What one column's sample values looked like: how many said each kind."""

    __slots__ = ("counts", "int_digits", "lossy", "scale", "tz_aware")

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.int_digits = 0  # widest integer part seen among integer/decimal values
        self.scale = 0  # most fractional digits among decimal values
        self.tz_aware = False
        self.lossy = False  # a value a narrower type would change ("007"): the column is text

    def add(self, kind: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1

    def add_digits(self, integer_part: int, scale: int) -> None:
        self.int_digits = max(self.int_digits, integer_part)
        self.scale = max(self.scale, scale)

    def observe(self, value: Any) -> None:
        # Order matters: bool is an int, datetime is a date.
        if isinstance(value, bool):
            self.add("boolean")
        elif isinstance(value, int):
            self.add("integer" if abs(value) <= _INT64_MAX else "decimal")
            self.add_digits(len(str(abs(value))), 0)
        elif isinstance(value, float):
            self.add("float")
        elif isinstance(value, Decimal):
            if not value.is_finite():
                self.add("float")
                return
            parts = value.as_tuple()
            assert isinstance(parts.exponent, int)  # finite, checked above
            self.add("decimal")
            self.add_digits(max(1, len(parts.digits) + parts.exponent), max(0, -parts.exponent))
        elif isinstance(value, datetime):
            self.add("timestamp")
            self.tz_aware = self.tz_aware or value.tzinfo is not None
        elif isinstance(value, date):
            self.add("date")
        elif isinstance(value, str):
            self.observe_text(value.strip())
        elif isinstance(value, (bytes, bytearray, memoryview)):
            self.add("binary")
        elif isinstance(value, (dict, list)):
            self.add("json")
        else:
            self.add("text")

    def observe_text(self, text: str) -> None:
        lowered = text.lower()
        if lowered in _TRUE_WORDS or lowered in _FALSE_WORDS:
            self.add("boolean")
        elif _INT_RE.fullmatch(text):
            self.observe(int(text))
        elif match := _DECIMAL_RE.fullmatch(text):
            scale = len(match.group(1))
            if scale > _MAX_DECIMAL_SCALE:
                self.add("float")
            else:
                self.add("decimal")
                integer = text.split(".")[0].lstrip("+-")
                self.add_digits(len(integer) or 1, scale)
        elif _FLOAT_RE.fullmatch(text):
            self.add("float")
        elif _DATE_RE.fullmatch(text) and _parse_date(text) is not None:
            self.add("date")
        elif (parsed := _parse_timestamp(text)) is not None:
            self.add("timestamp")
            self.tz_aware = self.tz_aware or parsed.tzinfo is not None
        else:
            if _ANY_INT_RE.fullmatch(text) or _ANY_NUMBER_RE.fullmatch(text):
                self.lossy = True  # a number a numeric column would change: "007", "-01.5"
            self.add("text")

    def spec(self, name: str) -> ColumnSpec:
        counts = self.counts
        total = sum(counts.values())
        if not total or self.lossy:
            return ColumnSpec(name, "text")
        allowed = max(1, total // 100)  # outliers a family may have: 1%, at least one value
        family_counts: dict[str, int] = {}
        for kind, count in counts.items():
            family = _FAMILY.get(kind)
            if family is not None:
                family_counts[family] = family_counts.get(family, 0) + count
        winner = None
        for family, count in family_counts.items():
            if total - count <= allowed and 3 * count >= 2 * total:
                winner = family
        if winner is None or winner in ("boolean", "binary", "json"):
            return ColumnSpec(name, winner or "text")
        if winner == "time":
            if "timestamp" in counts:
                return ColumnSpec(name, "timestamp", timezone=self.tz_aware)
            return ColumnSpec(name, "date")
        if "float" in counts:
            return ColumnSpec(name, "float")
        if "decimal" in counts:
            precision = self.int_digits + self.scale
            if precision > _MAX_PRECISION:
                return ColumnSpec(name, "text")
            return ColumnSpec(
                name, "decimal", precision=max(precision, _DEFAULT_PRECISION), scale=self.scale
            )
        return ColumnSpec(name, "integer")


def infer_columns(
    sample: Iterable[Mapping[str, Any]], *, max_rows: int = 10_000
) -> list[ColumnSpec]:
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
            return value
        if isinstance(value, (dict, list)):
            return json.dumps(value, default=str, ensure_ascii=False)
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
        return json.dumps(value, default=str, ensure_ascii=False)
    if isinstance(value, str):
        json.loads(value)  # raises ValueError when it is not JSON
        return value
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
