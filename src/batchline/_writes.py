"""The writes a pipeline declares once and the mapping emits per record.

Each class is a small declarative description; the SQL for it lives in the dialect modules.
A write is applied once per flush for all the records of a chunk, in the order the pipeline
declares them, so parents (lookups, upserts of customers) land before children.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from ._errors import ConfigError

__all__ = ["Delete", "Increment", "Insert", "Lookup", "Ref", "Upsert", "Write"]

#: How many Refs a Lookup keeps for reuse before it starts afresh (bounds its memory).
_INTERNED_REFS = 65_536


def _columns(value: str | Sequence[str] | None, what: str, *, required: bool) -> tuple[str, ...]:
    if value is None:
        if required:
            raise ConfigError(f"{what} is required")
        return ()
    cols = (value,) if isinstance(value, str) else tuple(value)
    if required and not cols:
        raise ConfigError(f"{what} must name at least one column")
    for col in cols:
        if not isinstance(col, str) or not col:
            raise ConfigError(f"{what}: column names must be non-empty strings, got {col!r}")
    return cols


@dataclass(frozen=True)
class Write:
    """Base of the declared writes; ``table`` may be ``"schema.table"``."""

    table: str
    kind: ClassVar[str] = "write"

    def __post_init__(self) -> None:
        if not isinstance(self.table, str) or not self.table:
            raise ConfigError(f"a write needs a table name, got {self.table!r}")

    @property
    def key_columns(self) -> tuple[str, ...]:
        return ()

    def describe(self) -> str:
        return f"{self.kind} {self.table}"


@dataclass(frozen=True)
class Insert(Write):
    """Plain insert of every emitted row (COPY on PostgreSQL)."""

    kind: ClassVar[str] = "insert"


@dataclass(frozen=True, init=False)
class Upsert(Write):
    """Insert, or update ``update`` columns when a row with the same ``key`` exists.

    ``update=None`` updates every non-key column the row carries; ``update=()`` only
    inserts missing rows and leaves existing ones alone. Rows for the same key within one
    chunk are applied in input order (the n-th row of a key in the chunk's n-th statement),
    so later values win, as applying them one by one would, and no row hides another's
    error (see ``batchline._aggregate``).
    """

    key: tuple[str, ...]
    update: tuple[str, ...] | None
    kind: ClassVar[str] = "upsert"

    def __init__(
        self, table: str, key: str | Sequence[str], update: str | Sequence[str] | None = None
    ) -> None:
        object.__setattr__(self, "table", table)
        object.__setattr__(self, "key", _columns(key, f"Upsert({table!r}) key", required=True))
        upd = None if update is None else _columns(update, "update", required=False)
        object.__setattr__(self, "update", upd)
        self.__post_init__()

    @property
    def key_columns(self) -> tuple[str, ...]:
        return self.key


@dataclass(frozen=True, init=False)
class Increment(Write):
    """Additive update of ``columns`` for the row with ``key``, aggregated per chunk.

    All increments of one key within a chunk are summed before they reach the database and
    applied as one set-based statement. With ``create=True`` (the default) a missing row is
    inserted with the summed values (insert-or-add); other columns the row carries are used
    only when the row is created. Constraints are checked against the chunk's totals, not
    after each record: that is the price of "aggregate before update".
    """

    key: tuple[str, ...]
    columns: tuple[str, ...]
    create: bool
    kind: ClassVar[str] = "increment"

    def __init__(
        self,
        table: str,
        key: str | Sequence[str],
        columns: str | Sequence[str],
        *,
        create: bool = True,
    ) -> None:
        object.__setattr__(self, "table", table)
        object.__setattr__(self, "key", _columns(key, f"Increment({table!r}) key", required=True))
        object.__setattr__(
            self, "columns", _columns(columns, f"Increment({table!r}) columns", required=True)
        )
        object.__setattr__(self, "create", bool(create))
        overlap = set(self.key) & set(self.columns)
        if overlap:
            raise ConfigError(f"Increment({table!r}): {sorted(overlap)} is both key and column")
        self.__post_init__()

    @property
    def key_columns(self) -> tuple[str, ...]:
        return self.key


@dataclass(frozen=True, init=False)
class Delete(Write):
    """Delete the rows whose ``key`` columns match the emitted key values."""

    key: tuple[str, ...]
    kind: ClassVar[str] = "delete"

    def __init__(self, table: str, key: str | Sequence[str]) -> None:
        object.__setattr__(self, "table", table)
        object.__setattr__(self, "key", _columns(key, f"Delete({table!r}) key", required=True))
        self.__post_init__()

    @property
    def key_columns(self) -> tuple[str, ...]:
        return self.key


class Ref:
    """A reference to a lookup row, resolved for the whole chunk at flush time.

    The mapping puts a ``Ref`` where the looked-up value (usually an id) belongs; batchline
    replaces it with the real value once per chunk, in one or two statements. (A plain
    slotted class: one is made per record, so it must be cheap to build.)
    """

    __slots__ = ("key", "lookup", "values")

    def __init__(
        self, lookup: Lookup, key: tuple[Any, ...], values: Mapping[str, Any] | None
    ) -> None:
        self.lookup = lookup
        self.key = key
        self.values = values  # for creating the row (``create=True`` only)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Ref):
            return NotImplemented
        return self.lookup is other.lookup and self.key == other.key

    def __hash__(self) -> int:
        return hash((id(self.lookup), self.key))

    def __repr__(self) -> str:
        return f"Ref({self.lookup.table}{dict(zip(self.lookup.key, self.key))})"


class Lookup:
    """Batched get-or-create of a mapping row (``key`` columns → ``returns`` column).

    ``ref(**values)`` is cheap and does no I/O: it returns a :class:`Ref` that is resolved
    at flush time. Resolved values are cached across chunks (only once their transaction
    has committed), so a hot key costs nothing after the first chunk. With ``create=True``
    a missing row is inserted from the values of the first record that referred to it;
    with ``create=False`` a missing key fails that record (stage ``lookup``).
    """

    __slots__ = ("_interned", "_single", "cache_size", "create", "key", "returns", "table")

    def __init__(
        self,
        table: str,
        key: str | Sequence[str],
        returns: str = "id",
        *,
        create: bool = False,
        cache_size: int = 200_000,
    ) -> None:
        if not isinstance(table, str) or not table:
            raise ConfigError(f"a Lookup needs a table name, got {table!r}")
        self.table = table
        self.key = _columns(key, f"Lookup({table!r}) key", required=True)
        self._single = self.key[0] if len(self.key) == 1 else None
        if not isinstance(returns, str) or not returns:
            raise ConfigError(f"Lookup({table!r}) returns must be a column name")
        self.returns = returns
        self.create = bool(create)
        self.cache_size = int(cache_size)
        # Refs handed out, by key: a hot key is referred to by one Ref object, not one per
        # record, which keeps a chunk's objects (and the garbage collector's work) down.
        self._interned: dict[Any, Ref] = {}

    def ref(self, **values: Any) -> Ref:
        """Refer to the row whose key columns equal ``values``; extra values are for creating it."""
        single = self._single
        if single is not None:  # the common case, kept short: it runs once per record
            value = values.get(single)
            if value is None:
                problem = "is empty" if single in values else "is missing"
                raise ValueError(f"lookup {self.table}: key column {single!r} {problem}")
            if len(values) == 1 or not self.create:
                ref = self._interned.get(value)
                if ref is not None:
                    return ref
            return self._new_ref((value,), value, values)
        try:
            key = tuple([values[col] for col in self.key])
        except KeyError as exc:
            raise ValueError(f"lookup {self.table}: missing key column {exc.args[0]!r}") from None
        for col, val in zip(self.key, key):
            if val is None:
                raise ValueError(f"lookup {self.table}: key column {col!r} is empty")
        if len(values) == len(key) or not self.create:
            ref = self._interned.get(key)
            if ref is not None:
                return ref
        return self._new_ref(key, key, values)

    def _new_ref(self, key: tuple[Any, ...], handle: Any, values: dict[str, Any]) -> Ref:
        if not self.create:
            ref = Ref(self, key, None)  # nothing to create from: keep no values
        elif len(values) > len(key):
            # Extra values create the row, and each record's own must be tried: a bad one
            # (a NULL for a NOT NULL column) must not fail other records with the same key.
            return Ref(self, key, values)
        else:
            ref = Ref(self, key, values)
        interned = self._interned
        if len(interned) >= _INTERNED_REFS:
            interned.clear()
        interned[handle] = ref
        return ref

    def __getstate__(self) -> dict[str, Any]:
        # Pickled (to Dask workers) without the refs handed out so far.
        return {name: getattr(self, name) for name in self.__slots__ if name != "_interned"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            object.__setattr__(self, name, value)
        self._interned = {}

    def __repr__(self) -> str:
        return (
            f"Lookup({self.table!r}, key={list(self.key)!r}, returns={self.returns!r}, "
            f"create={self.create})"
        )
