"""How each database's bulk path takes Arrow columns exactly (``batchline._arrow_write``).

For each database: which Arrow types (into which column types) the bulk path may send
without a value changing, and the form the columns are sent in:

- PostgreSQL: CSV text for ``COPY`` (Arrow's CSV writer), float32 widened first;
- SQLite: Python values from ``to_pylist``, decimals, dates and naive timestamps turned to
  the text the row path's adapter writes;
- MySQL/MariaDB: the text of a ``LOAD DATA LOCAL INFILE`` file (:func:`mysql_text`).
"""

from __future__ import annotations

from typing import Any

from ._arrow_values import text_scalar

__all__ = [
    "for_postgres",
    "for_sqlite",
    "mysql_exact",
    "mysql_text",
    "pg_targets",
    "sqlite_exact",
    "sqlite_native",
]

#: PostgreSQL column types (as ``TableInfo`` reflects them) that read each Arrow type's CSV
#: text back as the value the row path stores (psycopg sends the same value as its own
#: text; the server parses either with the column's input function).
_PG_INTEGER = frozenset({"SMALLINT", "INTEGER", "BIGINT", "NUMERIC"})
_PG_FLOAT = frozenset({"DOUBLE PRECISION", "REAL"})
_PG_TEXT = frozenset({"TEXT", "VARCHAR"})


def pg_targets(t: Any) -> frozenset[str]:
    """The PostgreSQL column types an Arrow column of type ``t`` may be copied into as CSV
    text without changing its value; empty when it must go the row path."""
    import pyarrow.types as pt

    if pt.is_integer(t):
        return _PG_INTEGER
    if pt.is_float32(t) or pt.is_float64(t):
        # sent as float64 (see _for_postgres): the shortest text that reads back as the same
        # double, as Python's repr, which is what psycopg sends
        return _PG_FLOAT
    if pt.is_decimal(t):
        return frozenset({"NUMERIC"})
    if pt.is_boolean(t):
        return frozenset({"BOOLEAN"})
    if pt.is_string(t) or pt.is_large_string(t):
        return _PG_TEXT
    if pt.is_date(t):
        return frozenset({"DATE"})
    if pt.is_timestamp(t) and t.unit != "ns":
        # microseconds at most: what both PostgreSQL and Python's datetime hold
        if t.tz is None:
            return frozenset({"TIMESTAMP WITHOUT TIME ZONE"})
        return frozenset({"TIMESTAMP WITH TIME ZONE"})
    return frozenset()


def sqlite_exact(t: Any) -> bool:
    """Whether an Arrow column of type ``t`` goes the SQLite bulk path. Its values are the
    Python values the row path gets from the same batch (``to_pylist``), bound by the same
    dialect code, so the gate is only about what the row path was tested to keep."""
    import pyarrow.types as pt

    return bool(
        pt.is_integer(t)
        or pt.is_float32(t)
        or pt.is_float64(t)
        or pt.is_decimal(t)
        or pt.is_boolean(t)
        or pt.is_string(t)
        or pt.is_large_string(t)
        or pt.is_date(t)
        or (pt.is_timestamp(t) and t.unit != "ns")
    )


def sqlite_native(t: Any) -> bool:
    """Whether sqlite3 binds the Python values of an Arrow column of type ``t`` as they
    are: 64-bit (or narrower) integers, doubles, text, nulls."""
    import pyarrow.types as pt

    return bool(
        pt.is_signed_integer(t)
        or pt.is_uint8(t)
        or pt.is_uint16(t)
        or pt.is_uint32(t)
        or pt.is_float64(t)
        or pt.is_string(t)
        or pt.is_large_string(t)
        or pt.is_null(t)
    )


def for_postgres(data: Any) -> Any:
    """``data`` with float32 columns widened to float64: Arrow writes a float32 as
    the shortest text of the float32 (``0.1``), the row path sends the Python float it
    became (``0.10000000149011612``); both must be the same number to a float8 column."""
    import pyarrow as pa
    import pyarrow.types as pt

    columns = list(data.columns)
    changed = False
    for i, column in enumerate(columns):
        t = column.type
        if pt.is_floating(t) and not pt.is_float64(t):
            columns[i] = column.cast(pa.float64())
            changed = True
    return pa.Table.from_arrays(columns, names=data.schema.names) if changed else data


def for_sqlite(data: Any) -> Any:
    """``data`` with the columns whose Python values the SQLite dialect would turn into
    text or integers one by one (``_adapt_value``) turned so by Arrow, in C, to the same
    text: a decimal to its ``str()`` (both write the exponent form by the same rule, the
    General Decimal Arithmetic's to-scientific-string), a date to its ISO form, a naive
    timestamp to ``isoformat(" ")`` (microseconds shown only when there are some), a
    boolean to 0/1. Zone-aware timestamps stay Python values: their text carries the
    offset of the value's own zone, which Arrow's cast does not write."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.types as pt

    columns = list(data.columns)
    changed = False
    for i, column in enumerate(columns):
        t = column.type
        if pt.is_decimal(t) or pt.is_date(t):
            columns[i] = column.cast(pa.string())
        elif pt.is_boolean(t):
            columns[i] = column.cast(pa.int64())
        elif pt.is_timestamp(t) and t.tz is None:
            text = column.cast(pa.timestamp("us")).cast(pa.string())
            columns[i] = pc.replace_substring_regex(text, pattern=r"\.000000$", replacement="")
        else:
            continue
        changed = True
    return pa.Table.from_arrays(columns, names=data.schema.names) if changed else data


#: MySQL/MariaDB column types (as ``TableInfo`` reflects them, without sizes) that read
#: each Arrow type's ``LOAD DATA`` text as the value the row path stores (PyMySQL sends
#: values as text too); a value they cannot hold exactly raises a warning, which sends the
#: chunk the row path (``ArrowWriter.send``).
_MY_INTEGER = frozenset({"TINYINT", "SMALLINT", "MEDIUMINT", "INTEGER", "INT", "BIGINT"})
_MY_TEXT = frozenset({"VARCHAR", "CHAR", "TEXT", "TINYTEXT", "MEDIUMTEXT", "LONGTEXT"})


def mysql_exact(t: Any, column: str) -> bool:
    """Whether an Arrow column of type ``t`` may be loaded into a MySQL column of
    (reflected) type ``column`` from :func:`mysql_text`'s form."""
    import pyarrow.types as pt

    column = column.upper()
    if pt.is_integer(t):
        return column in _MY_INTEGER or column in ("DECIMAL", "NUMERIC")
    if pt.is_float32(t) or pt.is_float64(t):
        return column in ("DOUBLE", "DOUBLE PRECISION")
    if pt.is_decimal(t):
        return column in ("DECIMAL", "NUMERIC")
    if pt.is_boolean(t):
        return column in ("BOOL", "BOOLEAN", "TINYINT")
    if pt.is_string(t) or pt.is_large_string(t):
        return column in _MY_TEXT
    if pt.is_date(t):
        return column == "DATE"
    if pt.is_timestamp(t) and t.unit != "ns":
        return column == "DATETIME"
    return False


#: How ``LOAD DATA`` reads :func:`mysql_text`'s file: every text quoted (a quote doubled
#: inside), nothing escaped by backslash, an unquoted ``NULL`` for a null.
MYSQL_FORMAT = (
    "CHARACTER SET utf8mb4 FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' "
    "ESCAPED BY '' LINES TERMINATED BY '\\n'"
)


def mysql_text(data: Any) -> bytes:
    """``data``'s rows as the text of a ``LOAD DATA`` file (:data:`MYSQL_FORMAT`), built by
    Arrow compute a column at a time: numbers, dates and times as Arrow writes them (a
    float as the shortest text that reads back as the same double, as PyMySQL sends it;
    a zone-aware timestamp as its UTC time, as the MySQL dialect stores it), booleans as
    1/0, text quoted with its quotes doubled."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.types as pt

    null = text_scalar("NULL")
    fields = []
    for column in data.columns:
        t = column.type
        if pt.is_string(t) or pt.is_large_string(t):
            quote = text_scalar('"', pa.large_string())
            doubled = pc.replace_substring(column.cast(pa.large_string()), '"', '""')
            text = pc.binary_join_element_wise(
                quote, doubled, quote, text_scalar("", pa.large_string())
            )
        else:
            if pt.is_boolean(t):
                column = column.cast(pa.int8())
            elif pt.is_floating(t) and not pt.is_float64(t):
                column = column.cast(pa.float64())
            elif pt.is_timestamp(t):
                column = column.cast(pa.timestamp("us"))  # (a zone-aware one: its UTC time)
            text = column.cast(pa.large_string())
        fields.append(pc.fill_null(text, null.cast(pa.large_string())))
    comma, empty = text_scalar(",", pa.large_string()), text_scalar("", pa.large_string())
    lines = pc.binary_join_element_wise(*fields, comma)
    # each line ends in a newline
    lines = pc.binary_join_element_wise(lines, empty, text_scalar("\n", pa.large_string()))
    if isinstance(lines, pa.ChunkedArray):
        lines = lines.combine_chunks()
    offsets = pa.Array.from_buffers(
        pa.int64(), len(lines) + 1, [None, lines.buffers()[1]], offset=lines.offset
    )
    start, end = offsets[0].as_py(), offsets[-1].as_py()
    return lines.buffers()[2].slice(start, end - start).to_pybytes()  # type: ignore[no-any-return]
