"""CSV text columns converted with Arrow compute (``_csv_convert``): taking Arrow's cast
alone for a column (``_plain_cast``) converts and refuses exactly what checking every value
against its kind's pattern does, on generated text near each kind's syntax."""

from __future__ import annotations

import os
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchline import _csv_convert
from batchline._coerce import coerce_record
from batchline._column_spec import ColumnSpec
from batchline._csv_blocks import META

EXAMPLES = int(os.environ.get("BATCHLINE_HYPOTHESIS_EXAMPLES", "12")) * 25

SPECS = {
    "integer": ColumnSpec("v", "integer"),
    "decimal": ColumnSpec("v", "decimal", precision=6, scale=2),
    "float": ColumnSpec("v", "float", inf=False, nan=False),
    "date": ColumnSpec("v", "date"),
    "timestamp": ColumnSpec("v", "timestamp"),
}


def _pieces(*parts: str) -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(parts), max_size=8).map("".join)


_DIGITS = st.text("0123456789", min_size=1, max_size=20)
TEXT = {
    "integer": st.one_of(
        _DIGITS,
        _DIGITS.map(lambda d: "-" + d),
        _pieces("0", "7", "9", "-", "+", "x", "0x", "1F", " ", "e", "."),
    ),
    "decimal": st.one_of(
        st.builds(lambda a, b: f"{a}.{b}", _DIGITS, _DIGITS),
        _pieces("0", "5", "9", "-", "+", ".", "e", "E", " ", "00"),
    ),
    "float": _pieces("0", "1", "9", "-", "+", ".", "e", "E", "400", "inf", "nan", " "),
    "date": st.one_of(
        st.dates().map(str),
        _pieces("2024", "0000", "-", "01", "02", "29", "30", "1", " ", "T"),
    ),
    "timestamp": st.one_of(
        st.datetimes().map(str),
        st.datetimes().map(lambda d: d.isoformat(timespec="minutes")),
        _pieces("2024-01-01", " ", "T", "12", ":00", ".5", ".1234567", "Z", "+02:00", "24"),
    ),
}


def convert(kind: str, values: list[str], plain: bool, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``values`` (one text column, and :data:`META`) converted as ``kind``, with or
    without ``_plain_cast``; what lands (values) and what is refused (positions, reasons)."""
    n = len(values)
    raw = pa.table(
        {
            "v": pa.array(values, pa.string()),
            META[0]: pa.array(range(1, n + 1), pa.int64()),
            META[1]: pa.array(range(2, n + 2), pa.int64()),
            META[2]: pa.nulls(n, pa.string()),
            META[3]: pa.nulls(n, pa.string()),
        }
    )
    spec = SPECS[kind]
    with monkeypatch.context() as m:
        if not plain:
            m.setattr(_csv_convert, "_plain_cast", lambda *a: None)
        out = _csv_convert.convert_block(
            raw,
            [spec],
            lambda record: coerce_record(record, [spec]),
            empty_text="empty",
            decimal_text=False,
        )
    landed = [repr(v) for v in out.data.column("v").to_pylist()]
    return landed, [(d.position, d.failure.message) for d in out.failed]


@pytest.mark.parametrize("kind", sorted(SPECS))
def test_arrows_cast_alone_converts_and_refuses_what_the_patterns_do(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(st.lists(TEXT[kind], min_size=1, max_size=12))
    def check(values: list[str]) -> None:
        plain = convert(kind, values, True, monkeypatch)
        patterns = convert(kind, values, False, monkeypatch)
        assert plain == patterns

    check()


@pytest.mark.parametrize(
    ("kind", "values"),
    [
        ("integer", ["1", "-22", "0333"]),
        ("decimal", ["1.5", "-0.25", "12.00"]),
        ("float", ["1.5", "1e3", "-.5"]),
        ("date", ["2024-02-29", "0001-01-01"]),
        ("timestamp", ["2024-01-01 12:00:00", "2024-01-01T00:00:00.000001"]),
    ],
)
def test_plain_columns_take_arrows_cast_alone(kind: str, values: list[str]) -> None:
    column = pa.array(values, pa.string())
    target = _csv_convert._target(SPECS[kind], False)
    assert _csv_convert._plain_cast(kind, column, target) is not None
    assert _csv_convert._plain_cast(kind, pa.array([*values, "0x1F"]), target) is None


def test_a_decimal_python_converted_lands_at_the_columns_scale(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # "0e5" and "1.5e1" are not the pattern's: coerce_record reads them (Decimal('0E+5')),
    # which Arrow could not hold as they are (the exponent reads as more digits)
    landed, refused = convert("decimal", ["0e5", "1.5e1", "2.25"], True, monkeypatch)
    assert landed == ["Decimal('0.00')", "Decimal('15.00')", "Decimal('2.25')"]
    assert refused == []
