"""One module per database: statements and error classification live there, nowhere else."""

from __future__ import annotations

import importlib

import sqlalchemy as sa

from .._errors import ConfigError
from ._base import (
    Classified,
    Dialect,
    ErrorKind,
    Executor,
    RowLimit,
    RowTooLarge,
    TableInfo,
    utf8_size,
)

__all__ = [
    "Classified",
    "Dialect",
    "ErrorKind",
    "Executor",
    "RowLimit",
    "RowTooLarge",
    "TableInfo",
    "dialect_for",
    "utf8_size",
]

# SQLAlchemy dialect name -> (module, class). Imported lazily so a missing optional driver
# only matters to those who use that database.
_REGISTRY = {
    "sqlite": ("._sqlite", "SQLiteDialect"),
    "postgresql": ("._postgres", "PostgresDialect"),
    "mysql": ("._mysql", "MySQLDialect"),
    "mariadb": ("._mysql", "MySQLDialect"),
}
_DRIVERS = {
    "sqlite": {"pysqlite"},
    "postgresql": {"psycopg"},
    "mysql": {"pymysql", "mysqldb"},
    "mariadb": {"pymysql", "mysqldb"},
}


def dialect_for(engine: sa.Engine) -> Dialect:
    """The batchline dialect for ``engine``; a clear ConfigError for what is not supported."""
    name = engine.dialect.name
    entry = _REGISTRY.get(name)
    if entry is None:
        raise ConfigError(
            f"batchline does not support {name!r} databases (supported: sqlite, postgresql, "
            "mysql/mariadb)"
        )
    driver = engine.dialect.driver
    if driver not in _DRIVERS[name]:
        raise ConfigError(
            f"batchline needs one of the drivers {sorted(_DRIVERS[name])} for {name}, "
            f"not {driver!r} (e.g. postgresql+psycopg://…)"
        )
    module = importlib.import_module(entry[0], __name__)
    cls: type[Dialect] = getattr(module, entry[1])
    return cls(engine)
