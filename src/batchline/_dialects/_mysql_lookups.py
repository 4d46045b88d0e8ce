"""MySQL/MariaDB lookups: keys selected through a derived table of the requested values (so a
``*_ci`` collation maps back to what was asked for), missing rows inserted as no-ops on
conflict (``RETURNING`` on MariaDB 10.5+)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._base import Executor, TableInfo

if TYPE_CHECKING:
    from ._mysql import MySQLDialect

__all__ = ["lookup_insert", "lookup_select"]


def lookup_select(
    self: MySQLDialect,
    ex: Executor,
    t: TableInfo,
    key: Sequence[str],
    returns: str,
    keys: Sequence[tuple[Any, ...]],
) -> list[tuple[Any, ...]]:
    """(requested key…, returns): the requested values, not the stored ones.

    Under a ``*_ci`` collation ``'ABC'`` finds the stored ``'abc'``; the derived table of
    requested keys lets the database do that matching and hand back what was asked for.
    """
    out: list[tuple[Any, ...]] = []
    picked = ", ".join(f"v.c{i}" for i in range(len(key)))
    match = " AND ".join(f"{t.sql}.{self.quote(c)} = v.c{i}" for i, c in enumerate(key))
    for batch in self._batches(ex, keys, 200, 5 * len(key) + 20):
        sql = (
            f"SELECT {picked}, {t.sql}.{self.quote(returns)} "  # noqa: S608
            f"FROM ({self._derived(len(key), len(batch))}) AS v JOIN {t.sql} ON {match}"
        )
        out.extend(ex.query(sql, [v for k in batch for v in k]))
    return out


def lookup_insert(
    self: MySQLDialect,
    ex: Executor,
    t: TableInfo,
    key: Sequence[str],
    columns: Sequence[str],
    returns: str,
    rows: Sequence[Sequence[Any]],
) -> list[tuple[Any, ...]] | None:
    """Insert missing rows, a no-op for those that exist (never ``INSERT IGNORE``).

    On MariaDB the statement returns the rows; only those whose stored key equals the
    requested one are reported, the rest (collation matches) are left to the select.
    """
    self._require_unique(t, key, "Lookup")
    head = f"INSERT INTO {t.sql} ({self.columns_sql(columns)}) VALUES "  # noqa: S608
    tail = self._noop(key)
    if not self.server(ex).returning:
        self._each_values_batch(ex, columns, rows, lambda values: head + values + tail)
        return None
    tail += f" RETURNING {self.columns_sql([*key, returns])}"
    pos = [list(columns).index(c) for c in key]
    wanted = {tuple(row[i] for i in pos) for row in rows}
    nkey = len(key)
    out: list[tuple[Any, ...]] = []
    fixed = len(head) + len(tail)
    for batch in self._batches(ex, rows, fixed, 4 * len(columns) + 4):
        params = [v for row in batch for v in row]
        sql = head + self._values(len(columns), len(batch)) + tail
        out.extend(r for r in ex.query(sql, params) if tuple(r[:nkey]) in wanted)
    return out
