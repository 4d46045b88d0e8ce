"""Column inference picks the narrowest lossless kind; coercion converts or says why not."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa

from batchline._infer import (
    ColumnSpec,
    _Stats,
    coerce_record,
    columns_from_arrow,
    infer_columns,
    parse_type,
)


def kinds(rows: list[dict[str, Any]]) -> dict[str, str]:
    return {spec.name: spec.kind for spec in infer_columns(rows)}


def kind_of(*values: Any) -> str:
    return kinds([{"c": v} for v in values])["c"]


# -- inference --------------------------------------------------------------------------------


def test_columns_come_out_in_first_seen_order() -> None:
    rows = [{"b": "1", "a": "x"}, {"c": "2026-01-01", "a": "y"}]
    assert [spec.name for spec in infer_columns(rows)] == ["b", "a", "c"]


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        (["1", "-20", "+3", "0"], "integer"),
        (["007", "12"], "text"),
        (["-007"], "text"),
        (["true", "FALSE", "Yes", "no"], "boolean"),
        (["0", "1", "1", "0"], "integer"),
        (["true", "1"], "text"),
        (["2026-11-28", "2025-01-31"], "date"),
        (["2026-02-30"], "text"),
        (["2026-11-28T10:30:00", "2026-11-28 10:30"], "timestamp"),
        (["2026-11-28T10:30:00.123456789Z"], "timestamp"),
        (["2026-11-28 10:30:00+01:00", "2026-11-28T10:30:00-0530"], "timestamp"),
        (["2026-11-28", "2026-11-29T08:00:00"], "timestamp"),
        (["1", "2.5e3"], "float"),
        (["1.5", "2.1234567"], "float"),
        (["nan"], "text"),
        (["12.50", "3.00"], "decimal"),
        (["apple", "1"], "text"),
        (["2026-11-28", "5"], "text"),
        (["", "  "], "text"),
    ],
)
def test_string_values_infer_the_narrowest_kind(values: list[str], kind: str) -> None:
    assert kind_of(*values) == kind


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        ([1, 2, -3], "integer"),
        ([1, 2.5], "float"),
        ([1.0, 2.0], "float"),
        ([True, False], "boolean"),
        ([0, 1], "integer"),
        ([True, 1], "text"),
        ([Decimal("1.25"), Decimal("3")], "decimal"),
        ([Decimal("1.25"), 2.5], "float"),
        ([date(2026, 1, 1)], "date"),
        ([datetime(2026, 1, 1, 12)], "timestamp"),
        ([date(2026, 1, 1), datetime(2026, 1, 1, 12)], "timestamp"),
        ([{"nested": 1}], "json"),
        ([[1, 2]], "json"),
        ([b"\x00\x01"], "binary"),
        ([1, "2"], "integer"),
    ],
)
def test_typed_values_infer_their_kind(values: list[Any], kind: str) -> None:
    assert kind_of(*values) == kind


def test_empty_strings_and_none_are_ignored_for_inference() -> None:
    assert kind_of("", None, "5", "", "6") == "integer"


def test_a_column_with_only_empty_values_is_text() -> None:
    assert kind_of("", None) == "text"


def test_mixed_integers_and_floats_make_a_float() -> None:
    assert kind_of("1", "2", "3.14159265") == "float"


def test_money_looking_strings_make_a_decimal_with_the_widest_scale() -> None:
    (spec,) = infer_columns([{"price": "12.50"}, {"price": "3"}, {"price": "0.125"}])
    assert spec == ColumnSpec("price", "decimal", precision=18, scale=3)


def test_decimal_precision_grows_for_wide_values() -> None:
    (spec,) = infer_columns([{"n": "1" * 25 + ".50"}])
    assert (spec.kind, spec.precision, spec.scale) == ("decimal", 27, 2)


def test_a_number_too_wide_for_any_numeric_stays_text() -> None:
    assert kind_of("9" * 40) == "text"


def test_an_integer_beyond_64_bits_becomes_a_decimal() -> None:
    (spec,) = infer_columns([{"n": str(2**64)}])
    assert (spec.kind, spec.scale) == ("decimal", 0)


def test_json_floats_stay_floats_even_when_they_look_like_money() -> None:
    assert kind_of(12.5, 3.25) == "float"


def test_timestamps_with_a_zone_make_a_zone_aware_column() -> None:
    (aware,) = infer_columns([{"t": "2026-11-28T10:30:00Z"}])
    (naive,) = infer_columns([{"t": "2026-11-28T10:30:00"}])
    assert aware.timezone and not naive.timezone


def test_only_the_first_max_rows_are_sampled() -> None:
    rows = [{"n": "1"}] * 5 + [{"n": "oops"}, {"n": "oops"}]
    assert infer_columns(rows, max_rows=5) == [ColumnSpec("n", "integer")]
    assert infer_columns(rows, max_rows=7) == [ColumnSpec("n", "text")]


def test_inference_consumes_a_generator_lazily_up_to_max_rows() -> None:
    pulled = 0

    def rows() -> Iterator[dict[str, str]]:
        nonlocal pulled
        while True:
            pulled += 1
            yield {"n": "1"}

    infer_columns(rows(), max_rows=10)
    assert pulled == 10


# -- sa_type ----------------------------------------------------------------------------------


def test_sa_type_matches_each_kind() -> None:
    assert isinstance(ColumnSpec("a", "integer").sa_type(), sa.BigInteger)
    float_type = ColumnSpec("a", "float").sa_type()
    assert isinstance(float_type, sa.Float) and float_type.precision == 53
    numeric = ColumnSpec("a", "decimal", precision=20, scale=2).sa_type()
    assert isinstance(numeric, sa.Numeric) and (numeric.precision, numeric.scale) == (20, 2)
    assert isinstance(ColumnSpec("a", "boolean").sa_type(), sa.Boolean)
    assert isinstance(ColumnSpec("a", "date").sa_type(), sa.Date)
    stamp = ColumnSpec("a", "timestamp", timezone=True).sa_type()
    assert isinstance(stamp, sa.DateTime) and stamp.timezone
    assert isinstance(ColumnSpec("a", "text").sa_type(), sa.Text)


def test_decimal_without_sizes_defaults_to_numeric_18_0() -> None:
    numeric = ColumnSpec("a", "decimal").sa_type()
    assert isinstance(numeric, sa.Numeric) and (numeric.precision, numeric.scale) == (18, 0)


def test_column_spec_refuses_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown column kind 'jsonb'"):
        ColumnSpec("a", "jsonb")


def test_inferred_columns_create_a_table_and_take_coerced_rows() -> None:
    rows = [
        {"id": "1", "sku": "007", "price": "12.50", "ok": "yes", "day": "2026-11-28",
         "at": "2026-11-28 10:00:00", "ratio": "0.1234567", "note": ""},
        {"id": "2", "sku": "008", "price": "", "ok": "no", "day": "",
         "at": "2026-11-29T11:00:00", "ratio": "1e-3", "note": "hello"},
    ]  # fmt: skip
    columns = infer_columns(rows)
    engine = sa.create_engine("sqlite://")
    table = sa.Table("t", sa.MetaData(), *(sa.Column(c.name, c.sa_type()) for c in columns))
    table.create(engine)
    with engine.begin() as conn:
        conn.execute(table.insert(), [coerce_record(row, columns) for row in rows])
        stored = conn.execute(sa.select(table).order_by(table.c.id)).all()
    engine.dispose()
    assert stored[0] == (
        1, "007", Decimal("12.50"), True, date(2026, 11, 28),
        datetime(2026, 11, 28, 10), 0.1234567, "",
    )  # fmt: skip
    assert stored[1].price is None and stored[1].day is None and stored[1].ratio == 0.001


# -- coercion ---------------------------------------------------------------------------------


COLUMNS = [
    ColumnSpec("id", "integer"),
    ColumnSpec("ratio", "float"),
    ColumnSpec("price", "decimal", precision=10, scale=2),
    ColumnSpec("ok", "boolean"),
    ColumnSpec("day", "date"),
    ColumnSpec("at", "timestamp"),
    ColumnSpec("name", "text"),
]


def test_coerce_converts_strings_to_each_kind() -> None:
    row = {
        "id": " 42 ",
        "ratio": "1.5e2",
        "price": "12.5",
        "ok": "Yes",
        "day": "2026-11-28",
        "at": "2026-11-28T10:30:00.5+02:00",
        "name": " keep spaces ",
    }
    assert coerce_record(row, COLUMNS) == {
        "id": 42,
        "ratio": 150.0,
        "price": Decimal("12.5"),
        "ok": True,
        "day": date(2026, 11, 28),
        "at": datetime(2026, 11, 28, 10, 30, 0, 500000, timezone(timedelta(hours=2))),
        "name": " keep spaces ",
    }


def test_coerce_turns_empty_strings_into_none_except_for_text() -> None:
    row = dict.fromkeys(("id", "ratio", "price", "ok", "day", "at", "name"), "")
    coerced = coerce_record(row, COLUMNS)
    assert coerced.pop("name") == ""
    assert set(coerced.values()) == {None}


def test_coerce_fills_missing_keys_with_none() -> None:
    assert coerce_record({"id": "1"}, COLUMNS) == {
        "id": 1, "ratio": None, "price": None, "ok": None, "day": None, "at": None, "name": None,
    }  # fmt: skip


def test_coerce_leaves_already_typed_values_alone() -> None:
    at = datetime(2026, 1, 1, 8, tzinfo=timezone.utc)
    row = {
        "id": 7,
        "ratio": 0.5,
        "price": Decimal("1.25"),
        "ok": False,
        "day": date(2026, 1, 1),
        "at": at,
        "name": "x",
    }
    assert coerce_record(row, COLUMNS) == row


def test_coerce_accepts_compatible_typed_values() -> None:
    row = {"id": 3.0, "ratio": 2, "price": 4, "ok": 1, "day": datetime(2026, 1, 2),
           "at": date(2026, 1, 2), "name": {"a": [1]}}  # fmt: skip
    assert coerce_record(row, COLUMNS) == {
        "id": 3, "ratio": 2.0, "price": Decimal(4), "ok": True, "day": date(2026, 1, 2),
        "at": datetime(2026, 1, 2), "name": '{"a": [1]}',
    }  # fmt: skip


def test_coerce_refuses_an_unexpected_column() -> None:
    with pytest.raises(ValueError, match="unexpected column 'extra'"):
        coerce_record({"id": "1", "extra": "x"}, COLUMNS)


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("id", "abc", "column 'id': 'abc' is not an integer"),
        ("id", "1.5", "column 'id': '1.5' is not an integer"),
        ("id", 2.5, "column 'id': 2.5 is not an integer"),
        ("id", True, "column 'id': True is not an integer"),
        ("id", str(2**63), f"column 'id': '{2**63}' is too large for a 64-bit integer"),
        ("ratio", "nan", "column 'ratio': 'nan' is not a number"),
        ("ratio", "1_000", "column 'ratio': '1_000' is not a number"),
        ("price", "12.345", "column 'price': '12.345' has more than 2 decimal places"),
        ("price", "123456789", "column 'price': '123456789' is too large for NUMERIC(10, 2)"),
        ("price", "12,50", "column 'price': '12,50' is not a decimal number"),
        ("ok", "maybe", "column 'ok': 'maybe' is not a boolean"),
        ("ok", 2, "column 'ok': 2 is not a boolean"),
        ("day", "2026-02-30", "column 'day': '2026-02-30' is not a date"),
        ("day", "28/11/2026", "column 'day': '28/11/2026' is not a date"),
        ("day", datetime(2026, 1, 1, 9), "is not a date"),
        ("at", "yesterday", "column 'at': 'yesterday' is not a timestamp"),
        ("at", "2026-11-28T25:00:00", "is not a timestamp"),
    ],
)
def test_coerce_errors_name_the_column_and_the_value(column: str, value: Any, message: str) -> None:
    with pytest.raises(ValueError) as info:
        coerce_record({column: value}, COLUMNS)
    assert message in str(info.value)


def test_coerce_accepts_leading_zeros_once_the_column_is_numeric() -> None:
    assert coerce_record({"id": "007"}, COLUMNS)["id"] == 7


def test_coerce_timestamp_column_takes_a_bare_date_as_midnight() -> None:
    assert coerce_record({"at": "2026-11-28"}, COLUMNS)["at"] == datetime(2026, 11, 28)


def test_coerce_refuses_nanoseconds_rather_than_cutting_them() -> None:
    # nine digits that are microseconds and zeros are kept; a seventh digit is not cut off
    at = coerce_record({"at": "2026-11-28 12:00:00.123456000"}, COLUMNS)["at"]
    assert at == datetime(2026, 11, 28, 12, 0, 0, 123456)
    with pytest.raises(ValueError, match="has nanoseconds"):
        coerce_record({"at": "2026-11-28 12:00:00.1234567"}, COLUMNS)


# -- what most values say ---------------------------------------------------------------------


def test_a_column_takes_the_kind_99_percent_of_a_large_sample_say() -> None:
    ten_bad = [{"n": str(i)} for i in range(990)] + [{"n": "x"}] * 10
    eleven_bad = [{"n": str(i)} for i in range(989)] + [{"n": "x"}] * 11
    assert kinds(ten_bad) == {"n": "integer"}
    assert kinds(eleven_bad) == {"n": "text"}


def test_a_small_sample_allows_one_outlier_among_two_thirds() -> None:
    assert kind_of("1", "x2", "3", "4") == "integer"
    assert kind_of("1", "x", "3") == "integer"
    assert kind_of("1", "x") == "text"
    assert kind_of("1", "x", "y", "4") == "text"


def test_wider_numbers_are_not_outliers_the_widest_wins() -> None:
    assert kind_of(*([str(i) for i in range(500)] + ["2.5"])) == "decimal"
    assert kind_of(*([str(i) for i in range(500)] + ["1e3"])) == "float"
    assert kind_of(*(["2026-01-01"] * 500 + ["2026-01-01T10:00:00"])) == "timestamp"


def test_a_number_a_numeric_column_would_change_keeps_the_column_text() -> None:
    assert kind_of(*([str(i) for i in range(1, 500)] + ["007"])) == "text"


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("int", ColumnSpec("c", "integer")),
        ("BIGINT", ColumnSpec("c", "integer")),
        ("double", ColumnSpec("c", "float")),
        ("numeric(12, 4)", ColumnSpec("c", "decimal", precision=12, scale=4)),
        ("decimal", ColumnSpec("c", "decimal", precision=18, scale=0)),
        ("timestamptz", ColumnSpec("c", "timestamp", timezone=True)),
        ("datetime", ColumnSpec("c", "timestamp")),
        ("text", ColumnSpec("c", "text")),
        ("text(40)", ColumnSpec("c", "text", length=40)),
        ("blob", ColumnSpec("c", "binary")),
        ("json", ColumnSpec("c", "json")),
    ],
)
def test_parse_type_reads_a_type_override(text: str, spec: ColumnSpec) -> None:
    assert parse_type("c", text) == spec


@pytest.mark.parametrize("text", ["varchar2", "decimal(2,5)", "integer(3)", "decimal(70,2)"])
def test_parse_type_refuses_what_it_cannot_create(text: str) -> None:
    with pytest.raises(ValueError, match="column 'c'"):
        parse_type("c", text)


def test_columns_from_arrow_use_the_declared_types() -> None:
    schema = pa.schema(
        [
            ("i", pa.int32()),
            ("u", pa.uint64()),
            ("d", pa.decimal128(38, 4)),
            ("t", pa.timestamp("ns", "Europe/Paris")),
            ("b", pa.large_binary()),
            ("l", pa.list_(pa.string())),
            ("s", pa.dictionary(pa.int8(), pa.string())),
            ("n", pa.null()),
        ]
    )
    assert columns_from_arrow(schema) == [
        ColumnSpec("i", "integer"),
        ColumnSpec("u", "decimal", precision=20, scale=0),
        ColumnSpec("d", "decimal", precision=38, scale=4),
        ColumnSpec("t", "timestamp", timezone=True),
        ColumnSpec("b", "binary"),
        ColumnSpec("l", "json"),
        ColumnSpec("s", "text"),
        ColumnSpec("n", "text"),
    ]


def test_a_free_text_column_is_decided_without_observing_every_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Once more values say text than a family may leave out (1%), the column is text
    whatever the rest say, so the rest are not tried against every kind."""
    observed: list[str] = []
    observe = _Stats.observe_text
    monkeypatch.setattr(
        _Stats,
        "observe_text",
        lambda self, text: (observed.append(text), observe(self, text))[1],
    )
    sample = [{"n": str(i), "words": f"word {i}"} for i in range(1000)]
    assert [c.kind for c in infer_columns(sample)] == ["integer", "text"]
    assert sum(text.startswith("word") for text in observed) == 11  # 10 allowed, one over
    assert sum(not text.startswith("word") for text in observed) == 1000


def test_equal_values_of_other_kinds_are_each_counted_as_their_own_kind() -> None:
    """``True == 1 == 1.0`` in Python: a column counted by value must still tell them apart."""
    assert infer_columns([{"a": True}] * 50 + [{"a": 1}] * 50)[0].kind == "text"
    assert infer_columns([{"a": 1}] * 50 + [{"a": 1.0}] * 50)[0].kind == "float"
    assert infer_columns([{"a": [1]}, {"a": "x"}, {"a": {"b": 2}}])[0].kind == "json"
    assert infer_columns([{"a": [1]}, {"a": None}, {"b": "1"}]) == [
        ColumnSpec("a", "json"),
        ColumnSpec("b", "integer"),
    ]
