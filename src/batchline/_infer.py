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

from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal
from itertools import islice
from typing import Any

from ._coerce import (
    _ANY_INT_RE,
    _ANY_NUMBER_RE,
    _DATE_RE,
    _DECIMAL_RE,
    _FALSE_WORDS,
    _FLOAT_RE,
    _INT_RE,
    _TRUE_WORDS,
    ValueMisfit,
    _parse_date,
    _parse_timestamp,
    coerce_record,
)
from ._column_spec import (
    _DEFAULT_PRECISION,
    _INT64_MAX,
    _MAX_DECIMAL_SCALE,
    _MAX_PRECISION,
    KINDS,
    ColumnSpec,
    columns_from_arrow,
    parse_type,
)

__all__ = [
    "KINDS",
    "ColumnSpec",
    "ValueMisfit",
    "coerce_record",
    "columns_from_arrow",
    "infer_columns",
    "parse_type",
]


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

    __slots__ = ("counts", "int_digits", "lossy", "scale", "tz_aware", "weight")

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.weight = 1  # how many sampled values the one being observed stands for
        self.int_digits = 0  # widest integer part seen among integer/decimal values
        self.scale = 0  # most fractional digits among decimal values
        self.tz_aware = False
        self.lossy = False  # a value a narrower type would change ("007"): the column is text

    def add(self, kind: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + self.weight

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
    records = list(islice(sample, max_rows))
    # Columns in the order their keys were first seen; each is read as a whole (a C loop),
    # its text (most of a CSV sample) counted (Counter, in C) and each distinct value
    # observed once, standing for all its copies: a flag or a date column repeats a few.
    names = list(dict.fromkeys(name for record in records for name in record))
    stats = {name: _Stats() for name in names}
    texts: dict[str, dict[str, int]] = {}
    for name in names:
        values = [record.get(name) for record in records]
        try:
            counted = Counter(values)
            mixed = any(type(v) is not str and v is not None for v in counted)
        except TypeError:  # an unhashable value: a JSON list or object
            counted, mixed = Counter([v for v in values if type(v) is str]), True
        if mixed:  # each other value observed as it is (1, True and 1.0 are equal keys)
            column = stats[name]
            for value in values:
                if value is not None and type(value) is not str:
                    column.observe(value)
        texts[name] = {v: n for v, n in counted.items() if type(v) is str}
    for name, seen in texts.items():
        column = stats[name]
        present = [(text.strip(), count) for text, count in seen.items()]
        # Once more values say text than any family may leave out, the column is text
        # whatever the rest say (the rule, :meth:`_Stats.spec`), so the rest are not
        # observed: a free-text column's every distinct value would try every kind.
        total = sum(column.counts.values()) + sum(c for text, c in present if text)
        allowed = max(1, total // 100)
        for stripped, count in present:
            if stripped:
                column.weight = count
                column.observe_text(stripped)
                if column.counts.get("text", 0) > allowed:
                    break
        column.weight = 1
    return [column.spec(name) for name, column in stats.items()]
