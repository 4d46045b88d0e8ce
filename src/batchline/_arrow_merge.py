"""Upsert and increment chunks in bulk: staged as they are, then merged by the database.

Why: ``--upsert`` and ``--increment`` loads went the row path (a Python object per record,
``Out``, ``_aggregate``), where an insert's chunk goes straight to COPY, executemany or
LOAD DATA (``_arrow_write``). Here such a chunk takes the same bulk form into a temporary
table, then one set-based statement per round moves it into the target
(``_dialects._merge``), in the chunk's transaction, beside its checkpoint: an increment
is applied once with its checkpoint, or not at all.

What lands is what the row path lands (it is the reference): for an upsert, the n-th row of
each key goes in the n-th statement, as ``_aggregate`` sends them; for an increment, each
key's amounts are summed (exactly: integers and decimals, in any order; floats only where
the database adds them one by one in the records' order, as Python does) and the key's
first row gives the columns used only to create it. A chunk whose rows the row path would
treat otherwise goes the row path (:meth:`ArrowMerge.exact`): a key or an amount that is
NULL (a dead letter there), an amount that is a float where its sum could differ, a key of
floats (whose equality differs between Python and SQL). A chunk the database refuses (a
CHECK, NOT NULL, an out-of-range total) is rolled back and redone as rows, as for inserts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._database import Session
from ._dialects import Dialect, TableInfo, _merge
from ._writes import Increment, Upsert

__all__ = ["ArrowMerge"]

#: Loads ``data`` (its ``wire`` form, when built ahead) into a table: the bulk insert.
Load = Callable[[Session, Any, Any, TableInfo], None]


class ArrowMerge:
    """How one run's ``Upsert`` or ``Increment`` chunks are written in bulk."""

    def __init__(self, dialect: Dialect, table: TableInfo, write: Upsert | Increment) -> None:
        self.dialect = dialect
        self.table = table
        self.write = write

    def exact(self, data: Any) -> bool:
        """Whether merging ``data`` (a ``pyarrow.Table``) on the server does what the row
        path does with its records (see the module's docstring)."""
        import pyarrow.compute as pc
        import pyarrow.types as pt

        names = data.schema.names
        write = self.write
        if _merge.ORD in names or _merge.ROUND in names:
            return False
        for c in write.key:
            if c not in names:
                return False  # the row path dead-letters each record (no key)
            column = data.column(c)
            t = column.type
            if column.null_count or not (
                pt.is_integer(t)
                or pt.is_string(t)
                or pt.is_large_string(t)
                or pt.is_decimal(t)
                or pt.is_date(t)
                or pt.is_timestamp(t)
                or pt.is_boolean(t)
            ):
                return False
        if isinstance(write, Upsert):
            return True
        if not write.create:
            return False  # (an UPDATE only: left to the row path)
        for c in write.columns:
            if c not in names:
                return False
            column = data.column(c)
            t = column.type
            if column.null_count:
                return False  # the row path dead-letters the record (no amount)
            if pt.is_integer(t):
                if self.dialect.name == "sqlite" and len(column):
                    # SQLite's SUM stops at 64 bits where Python's does not: only where
                    # no total can get there
                    low, high = pc.min_max(column).values()
                    bound = max(abs(low.as_py()), abs(high.as_py()))
                    if bound * len(column) >= 2**63:
                        return False
            elif pt.is_decimal(t):
                if self.dialect.name == "sqlite":
                    return False  # (decimals are text there: SQLite would add floats)
            elif pt.is_floating(t):
                # floats added in the records' order (PostgreSQL's ordered window SUM),
                # as doubles (the column's type, in which they are staged)
                if self.dialect.name != "postgresql":
                    return False
                if self.table.columns.get(c, "").upper() != "DOUBLE PRECISION":
                    return False
            else:
                return False  # (a bool is no amount for the row path either)
        return True

    def send(self, session: Session, data: Any, wire: Any, load: Load) -> None:
        """Stage ``data`` (``load``: the bulk insert, into the staging table), then merge
        it into the target, inside the session's open transaction."""
        import pyarrow.types as pt

        names = data.schema.names
        d, t, write = self.dialect, self.table, self.write
        staged = _merge.stage(d, session, t, names)
        load(session, data, wire, staged)
        types = {c: data.schema.field(c).type for c in write.key}
        text = [c for c, ty in types.items() if pt.is_string(ty) or pt.is_large_string(ty)]
        if isinstance(write, Upsert):
            update = (
                [c for c in names if c not in write.key]
                if write.update is None
                else [c for c in write.update if c in names]
            )
            rounds = _rounds(data, write.key)
            _merge.upsert(d, session, t, staged, write.key, names, update, rounds, text)
            return
        in_order = any(pt.is_floating(data.schema.field(c).type) for c in write.columns)
        _merge.increment(d, session, t, staged, write.key, names, write.columns, text, in_order)

    def describe(self) -> str:
        return f"{self.write.describe()} (bulk)"


def _rounds(data: Any, key: tuple[str, ...]) -> int:
    """The most rows any key has in ``data``: how many statements the row path's upsert
    takes for it (1 when the keys are distinct)."""
    import pyarrow.compute as pc

    if data.num_rows <= 1:
        return int(data.num_rows)
    counts = data.select(list(key)).group_by(list(key)).aggregate([([], "count_all")])
    return int(pc.max(counts.column("count_all")).as_py())
