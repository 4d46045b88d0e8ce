"""A column's kind (``ColumnSpec``), made from a ``--type`` text or an Arrow schema.

The kinds a load creates columns with and coerces values to; the SQL type of each kind per
dialect is :meth:`ColumnSpec.sa_type` (the README's Arrow → SQL table).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql

__all__ = ["KINDS", "ColumnSpec", "columns_from_arrow", "parse_type"]

KINDS = ("integer", "float", "decimal", "boolean", "date", "timestamp", "text", "binary", "json")
"""The column kinds :func:`infer_columns` can choose."""

_INT64_MAX = 2**63 - 1
_MAX_PRECISION = 38  # the widest NUMERIC that every supported database accepts
_MAX_DECLARED_PRECISION = 65  # MySQL's DECIMAL limit (PostgreSQL takes 1000): Arrow's decimal256
_DEFAULT_PRECISION = 18
_MAX_DECIMAL_SCALE = 6  # more fractional digits than this looks like a measurement: float


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
