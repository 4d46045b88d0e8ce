"""A load's table: created from the data's column kinds when missing, or read as it is.

The kinds come from a Parquet/Arrow schema as declared, or from a sample of CSV/JSON records
(``_infer``); ``spec["types"]`` overrides either. An existing table keeps its columns, and
the values are coerced to them (its kinds are read back from the database).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from ._errors import ConfigError, SourceError
from ._infer import (
    ColumnSpec,
    infer_columns,
    parse_type,
)
from ._load_spec import check_columns, columns_from_spec, schema_of

__all__ = ["ensure_table", "kind_of", "refresh_schema", "split_table"]


def kind_of(column: Any) -> ColumnSpec:
    """The kind values are coerced to for a reflected column."""
    name, typ = column["name"], column["type"]
    if isinstance(typ, sa.Boolean) or (
        type(typ).__name__ == "TINYINT" and getattr(typ, "display_width", None) == 1
    ):
        return ColumnSpec(name, "boolean")
    if isinstance(typ, sa.Integer):
        return ColumnSpec(name, "integer")
    if isinstance(typ, sa.Float):
        return ColumnSpec(name, "float")
    if isinstance(typ, sa.Numeric):
        if typ.asdecimal is False:
            return ColumnSpec(name, "float")
        precision = typ.precision or 38
        return ColumnSpec(name, "decimal", precision=precision, scale=typ.scale or 0)
    if isinstance(typ, sa.DateTime):
        # MySQL's DATETIME keeps fsp digits (none unless declared), PostgreSQL's timestamp(p)
        # keeps p (six unless declared): a finer value would be rounded or cut silently
        fraction = (typ.fsp or 0) if hasattr(typ, "fsp") else getattr(typ, "precision", None)
        return ColumnSpec(
            name,
            "timestamp",
            timezone=bool(getattr(typ, "timezone", False)),
            fraction=fraction if isinstance(fraction, int) and fraction < 6 else None,
        )
    if isinstance(typ, sa.Date):
        return ColumnSpec(name, "date")
    if isinstance(typ, sa.types._Binary):  # BLOB, BYTEA, LONGBLOB, VARBINARY
        return ColumnSpec(name, "binary")
    if isinstance(typ, sa.JSON):
        return ColumnSpec(name, "json")
    return ColumnSpec(name, "text")


_KEY_LENGTH_MIN = 255  # a MySQL key column's VARCHAR is at least this wide...
_KEY_LENGTH_MAX = 768  # ...and at most this: 768 utf8mb4 characters fill InnoDB's 3072-byte key


def split_table(name: str) -> tuple[str | None, str]:
    """``schema.table`` as (schema, table); a bare name has no schema (None)."""
    schema, _, table = name.rpartition(".")
    return schema or None, table


def _fit_to(engine: sa.Engine, columns: list[ColumnSpec]) -> list[ColumnSpec]:
    """What the database's columns can hold: NaN/±inf on SQLite and MySQL are refused (so
    dead-lettered with the reason) rather than stored as NULL or failing the statement."""
    name = engine.dialect.name
    if name not in ("sqlite", "mysql", "mariadb"):
        return columns
    inf = name == "sqlite"  # SQLite's REAL holds ±inf; MySQL's DOUBLE holds neither
    return [dataclasses.replace(c, nan=False, inf=inf) if c.kind == "float" else c for c in columns]


def _key_length(sample: Sequence[Mapping[str, Any]], column: str, share: int = 1) -> int:
    """A MySQL text key's VARCHAR length: room for the sample's longest value, twice over,
    within its ``share`` (how many text columns the key has) of InnoDB's 3072-byte key."""
    longest = max((len(str(r.get(column) or "")) for r in sample), default=0)
    most = _KEY_LENGTH_MAX // max(1, share)
    return min(most, max(_KEY_LENGTH_MIN, 2 * longest))


def _creation_columns(
    engine: sa.Engine,
    spec: Mapping[str, Any],
    sample: Sequence[Mapping[str, Any]],
    declared: Sequence[ColumnSpec] | None,
) -> list[ColumnSpec]:
    """The columns of a table the load creates: declared (Arrow) or inferred, then the
    ``--type`` overrides, then what the dialect needs (key lengths on MySQL)."""
    if declared is not None:
        columns = list(declared)
    else:
        if not sample:
            raise SourceError(
                f"table {spec['table']} does not exist and the input has no record to infer "
                "its columns from"
            )
        columns = infer_columns(sample, max_rows=len(sample))
    overrides = dict(spec.get("types") or {})
    unknown = [n for n in overrides if n not in {c.name for c in columns}]
    if unknown:
        raise ConfigError(
            f"--type names {', '.join(map(repr, unknown))}, which the input lacks "
            f"(columns: {', '.join(c.name for c in columns)})"
        )
    columns = [parse_type(c.name, overrides[c.name]) if c.name in overrides else c for c in columns]
    keys = set(spec["key"]) if spec["mode"] in ("upsert", "increment") else set()
    dialect = engine.dialect.name
    if dialect in ("mysql", "mariadb"):
        text_keys = [c.name for c in columns if c.name in keys and c.kind == "text"]
        columns = [
            dataclasses.replace(c, length=_key_length(sample, c.name, len(text_keys)))
            if c.name in text_keys and c.length is None
            else c
            for c in columns
        ]
    if dialect == "sqlite" and spec["mode"] == "increment":
        inexact = [c.name for c in columns if c.name in spec["columns"] and c.kind == "decimal"]
        if inexact:
            raise ConfigError(
                f"SQLite cannot add decimals exactly (column {inexact[0]!r}): its arithmetic "
                "is floating point, and batchline stores decimals there as exact text. Pass "
                f"--type {inexact[0]}=float to add them as floating point, or load into "
                "PostgreSQL or MySQL/MariaDB"
            )
    return columns


def ensure_table(
    engine: sa.Engine,
    spec: dict[str, Any],
    sample: Sequence[Mapping[str, Any]],
    *,
    declared: Sequence[ColumnSpec] | None = None,
) -> bool:
    """Create the spec's table when it is missing; fill ``spec["schema"]``.

    A new table takes ``declared`` column kinds when the source declares them (Parquet,
    Arrow, DataFrames), else kinds inferred from ``sample``; ``spec["types"]`` overrides
    either. ``schema.table`` creates the table in that schema (PostgreSQL) or database
    (MySQL), which must exist. An existing table keeps its columns: values are coerced to
    their types, and a field the table has no column for is refused up front (one clear
    error, not a dead letter per row). Returns whether the table was created.

    Raises:
        SourceError: the table is missing and there is no record to infer it from, or the
            records have fields the table lacks, or the schema does not exist.
        ConfigError: the key, increment or ``--type`` columns are not among the columns.
    """
    table = spec["table"]
    schema, name = split_table(table)
    seen: list[str] = [c.name for c in declared] if declared is not None else []
    for record in sample:
        for column in record:
            if column not in seen:
                seen.append(column)
    inspector = sa.inspect(engine)
    if schema is not None and schema not in inspector.get_schema_names():
        raise SourceError(f"no schema {schema!r} for table {table} (create it first)")
    created = False
    if inspector.has_table(name, schema=schema):
        reflected = inspector.get_columns(name, schema=schema)
        if spec.get("schema"):
            columns = columns_from_spec(spec)  # a resumed job keeps its first run's kinds
        else:
            known = {c["name"] for c in reflected}
            extra = [field for field in seen if field not in known]
            if extra:
                raise SourceError(
                    f"table {table} has no column {', '.join(map(repr, extra))} "
                    "(present in the input)"
                )
            wanted = set(seen) if seen else known
            columns = [kind_of(c) for c in reflected if c["name"] in wanted]
    else:
        columns = _creation_columns(engine, spec, sample, declared)
        check_columns(spec, [c.name for c in columns])
        keys = set(spec["key"]) if spec["mode"] in ("upsert", "increment") else set()
        metadata = sa.MetaData()
        sa.Table(
            name,
            metadata,
            *[
                sa.Column(c.name, c.sa_type(), primary_key=c.name in keys, autoincrement=False)
                for c in columns
            ],
            schema=schema,
        )
        try:
            metadata.create_all(engine)
        except sa.exc.DBAPIError:
            if not sa.inspect(engine).has_table(name, schema=schema):
                raise
            # another runner of the same load created it a moment ago: use it as it is
            return ensure_table(engine, spec, sample, declared=declared)
        created = True
    check_columns(spec, [c.name for c in columns])
    spec["schema"] = schema_of(_fit_to(engine, columns))
    return created


def refresh_schema(engine: sa.Engine, spec: dict[str, Any]) -> None:
    """Take the column kinds of ``spec["schema"]`` from the table as it is now.

    A replay runs after the cause was fixed, and the fix may be a new column type (a text
    column where a number did not fit): the records are converted to what the table holds
    now. A boolean stays boolean where the database stores it as a small integer (MySQL), and
    a decimal stays decimal where SQLite stores it as exact text.
    """
    inspector = sa.inspect(engine)
    schema, name = split_table(spec["table"])
    if not inspector.has_table(name, schema=schema):
        return
    now = {c["name"]: kind_of(c) for c in inspector.get_columns(name, schema=schema)}
    sqlite = engine.dialect.name == "sqlite"
    columns = []
    for column in columns_from_spec(spec):
        current = now.get(column.name)
        if (
            current is None
            or (column.kind == "boolean" and current.kind == "integer")
            # SQLite's DECIMAL_TEXT reflects as text: still checked as the decimal it holds
            or (sqlite and column.kind == "decimal" and current.kind == "text")
        ):
            columns.append(column)
        else:
            columns.append(current)
    spec["schema"] = schema_of(_fit_to(engine, columns))
