"""MySQL and MariaDB through PyMySQL (or mysqlclient): byte-sized multi-row statements.

What each write becomes:

- ``Insert``: ``INSERT … VALUES (…), (…)``, as many rows per statement as fit in half of the
  server's ``max_allowed_packet`` (read once per connection; row sizes are estimated from
  the values, conservatively). Arrow chunks (``_arrow_write``) go by ``LOAD DATA LOCAL
  INFILE`` instead, checked for warnings: with LOCAL the server turns errors into warnings
  (duplicate keys skipped, bad values cut), so a chunk with any is redone as rows. PyMySQL
  sends a local file only during that statement (``Session.load_local``).
- ``Upsert`` and ``Increment(create=True)``: ``INSERT … ON DUPLICATE KEY UPDATE``, with the
  row alias (``VALUES … AS new … c = new.c``) on MySQL 8.0.19+ and ``VALUES(c)`` on MariaDB
  and older MySQL. ON DUPLICATE KEY UPDATE fires on a collision with *any* unique key of
  the table, not only the declared key: a row that repeats another unique column updates
  (or adds to) the row that holds it. A key without a unique index would silently insert
  duplicates, so batchline refuses it.
- ``Increment(create=False)``: one ``UPDATE t SET c = c + (SELECT SUM(…) FROM (SELECT … UNION
  ALL …) v WHERE <key matches>) WHERE key IN (…)``. Summing in the database keeps keys that
  the column's collation treats as equal (``'abc'``/``'ABC'`` under ``*_ci``) from losing
  an increment, which a multi-table ``UPDATE … JOIN`` would (it updates a row once).
- ``Delete``: ``DELETE … WHERE k IN (…)`` or ``(a, b) IN ((…), (…))``.
- ``Lookup``: the select joins the requested keys as a derived table to the target table and
  returns the *requested* key values, so a case- or accent-insensitive collation that
  matches ``'ABC'`` to the stored ``'abc'`` still maps back to what the mapping asked for.
  Missing rows are created with ``INSERT … ON DUPLICATE KEY UPDATE k = k`` (a no-op on
  conflict; ``INSERT IGNORE`` would also hide bad values); on MariaDB 10.5+ the same
  statement says ``RETURNING`` the ids, elsewhere the flusher selects them. Either way an
  ON DUPLICATE KEY no-op consumes an AUTO_INCREMENT value, so ids may have gaps.

Connections: batchline's session runs with autocommit off and ``READ COMMITTED`` isolation
(as PostgreSQL's default), both restored when the connection goes back to the pool. With
InnoDB's default ``REPEATABLE READ`` the select after an ON DUPLICATE KEY no-op would read
the transaction's snapshot and miss the row another worker has just committed (a locking
read would see it, but take gap locks that make concurrent workers deadlock).
Transactions start implicitly with the chunk's first statement (its lookup SELECT
included), so ``begin`` sends nothing.

Strict SQL mode is required and checked when batchline takes a connection: without
``STRICT_TRANS_TABLES``/``STRICT_ALL_TABLES`` a too-long or out-of-range value is truncated
with a warning and the record "succeeds" with wrong data. batchline refuses such a session
with a ConfigError naming ``sql_mode`` rather than switching the mode itself: changing the
semantics of a server behind its owner's back is not batchline's call, and the fix is one
line (``SET GLOBAL sql_mode`` or ``?init_command=SET SESSION sql_mode=…`` in the URL).
Tables must use a transactional engine (InnoDB): a MyISAM table cannot roll a failed chunk
back, so it is refused at pipeline start.

Errors are classified by MySQL/MariaDB error number (``exc.args[0]``).
"""

from __future__ import annotations

import datetime as dt
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa

from .._errors import ConfigError
from ._base import (
    Classified,
    Dialect,
    Executor,
    RowLimit,
    RowTooLarge,
    TableInfo,
)
from ._mysql_errors import classify
from ._mysql_lookups import lookup_insert, lookup_select
from ._mysql_server import (
    _NON_TRANSACTIONAL,
    _STATEMENT_ROOM,
    _escape_datetime_utc,
    _exact_literal_size,
    _literal_size,
    _Server,
    parse_server,
)

__all__ = ["MySQLDialect", "parse_server"]

_STRICT = ("STRICT_TRANS_TABLES", "STRICT_ALL_TABLES")
_ALIAS = "batchline_new"


class MySQLDialect(Dialect):
    name = "mysql"
    placeholder = "%s"
    #: For the state tables' statements, which count parameters: modest, so that a chunk's
    #: dead letters (9 parameters, one of them the payload) stay far below the packet limit.
    max_params = 8192

    def __init__(self, engine: sa.Engine) -> None:
        super().__init__(engine)
        self._servers: weakref.WeakKeyDictionary[Any, _Server] = weakref.WeakKeyDictionary()
        #: Table SQL → the (lower-cased) column sets of its primary key and unique indexes.
        self._unique: dict[str, list[frozenset[str]]] = {}

    # -- reflection -----------------------------------------------------------------------------
    def reflect(self, conn: sa.Connection, name: str) -> TableInfo:
        info = super().reflect(conn, name)
        schema, _, table = name.rpartition(".")
        row = conn.exec_driver_sql(
            "SELECT ENGINE FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = COALESCE(%s, DATABASE()) AND TABLE_NAME = %s",
            (schema or None, table),
        ).first()
        engine = str(row[0]).upper() if row and row[0] else ""
        if engine in _NON_TRANSACTIONAL:
            raise ConfigError(
                f"table {name} uses the {row[0] if row else ''} storage engine, which cannot "
                "roll a failed chunk back; batchline needs a transactional engine such as "
                f"InnoDB (ALTER TABLE {name} ENGINE=InnoDB)"
            )
        insp = sa.inspect(conn)
        sets: list[frozenset[str]] = []
        pk = insp.get_pk_constraint(table, schema=schema or None).get("constrained_columns")
        if pk:
            sets.append(frozenset(c.lower() for c in pk))
        for ix in insp.get_indexes(table, schema=schema or None):
            cols = [c for c in ix.get("column_names") or [] if c]
            if ix.get("unique") and cols and len(cols) == len(ix.get("column_names") or []):
                sets.append(frozenset(c.lower() for c in cols))  # expression indexes: no
        self._unique[info.sql] = sets
        return info

    def _require_unique(self, t: TableInfo, key: Sequence[str], what: str) -> None:
        """Refuse a key without a unique index: ON DUPLICATE KEY would insert duplicates."""
        sets = self._unique.get(t.sql)
        if sets is None or frozenset(c.lower() for c in key) in sets:  # names ignore case
            return
        raise ConfigError(
            f"{what} {t.name} on key ({', '.join(key)}) needs a PRIMARY KEY or UNIQUE index on "
            "exactly those columns: MySQL's ON DUPLICATE KEY UPDATE would otherwise insert "
            "duplicate rows"
        )

    def merges(self, t: TableInfo, key: Sequence[str]) -> bool:
        sets = self._unique.get(t.sql)
        return sets is None or frozenset(c.lower() for c in key) in sets

    # -- connections ----------------------------------------------------------------------------
    def on_acquire(self, dbapi_conn: Any) -> None:
        encoders = getattr(dbapi_conn, "encoders", None)
        if isinstance(encoders, dict):  # PyMySQL: zone-aware datetimes go as their UTC time
            encoders[dt.datetime] = _escape_datetime_utc
        cur = dbapi_conn.cursor()
        try:
            cur.execute("SELECT @@SESSION.sql_mode, @@max_allowed_packet, VERSION()")
            sql_mode, max_packet, version = cur.fetchone()
            modes = {m.strip().upper() for m in str(sql_mode or "").split(",")}
            if not modes & set(_STRICT):
                raise ConfigError(
                    "MySQL/MariaDB must run in strict SQL mode for batchline: this session's "
                    f"sql_mode is {sql_mode!r}, so a too-long or out-of-range value would be "
                    "truncated with a warning instead of failing its record. Add "
                    "STRICT_TRANS_TABLES to the server's sql_mode (SET GLOBAL sql_mode = "
                    "CONCAT(@@GLOBAL.sql_mode, ',STRICT_TRANS_TABLES')), or to the session "
                    "through the URL: ?init_command=SET SESSION sql_mode='STRICT_TRANS_TABLES'"
                )
            server = parse_server(str(version), int(max_packet), bool(dbapi_conn.get_autocommit()))
            cur.execute(f"SELECT @@SESSION.{server.isolation_variable}")
            server.isolation = str(cur.fetchone()[0])
            if server.autocommit:
                dbapi_conn.autocommit(False)
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        finally:
            cur.close()
        self._servers[dbapi_conn] = server

    def on_release(self, dbapi_conn: Any) -> None:
        server = self._servers.pop(dbapi_conn, None)
        if server is None:
            return
        dbapi_conn.rollback()
        level = (server.isolation or "REPEATABLE-READ").replace("-", " ").upper()
        if level in ("READ UNCOMMITTED", "READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"):
            cur = dbapi_conn.cursor()
            try:
                cur.execute(f"SET SESSION TRANSACTION ISOLATION LEVEL {level}")
            finally:
                cur.close()
        if server.autocommit:
            dbapi_conn.autocommit(True)

    def begin(self, ex: Executor) -> None:
        """Nothing to send: with autocommit off InnoDB begins at the first statement."""

    def lock_place(self, ex: Executor) -> str:
        return str(ex.query("SELECT DATABASE()")[0][0])

    def try_lock(self, ex: Executor, name: str) -> bool:
        # A user lock of the connection (names are server-wide, hence the place in ``name``);
        # the server drops it when the connection ends.
        return bool(ex.query("SELECT GET_LOCK(%s, 0)", [self._lock_name(name)])[0][0] == 1)

    def unlock(self, ex: Executor, name: str) -> None:
        ex.query("SELECT RELEASE_LOCK(%s)", [self._lock_name(name)])

    def _lock_name(self, name: str) -> str:
        return "batchline:" + self.lock_digest(name).hex()[:48]  # at most 64 characters

    def server(self, ex: Executor) -> _Server:
        """What the session's server is (read when batchline took the connection)."""
        conn = ex.driver_connection
        server = self._servers.get(conn)
        if server is None:  # a connection batchline did not prepare (e.g. a user's executor)
            rows = ex.query("SELECT @@max_allowed_packet, VERSION()")
            server = parse_server(str(rows[0][1]), int(rows[0][0]), False)
            self._servers[conn] = server
        return server

    # -- error classification -------------------------------------------------------------------
    def classify(self, exc: BaseException) -> Classified:
        return classify(exc)

    # -- sizes ------------------------------------------------------------------------------------
    def row_limit(self, ex: Executor) -> RowLimit:
        server = self.server(ex)
        return RowLimit(
            server.max_packet - _STATEMENT_ROOM,
            f"{'MariaDB' if server.mariadb else 'MySQL'}'s max_allowed_packet "
            f"({server.max_packet:,} bytes) for one statement",
        )

    def value_bytes(self, value: Any) -> int:
        return _exact_literal_size(value)

    # -- batching ---------------------------------------------------------------------------------
    def params_per_statement(self, ex: Executor) -> int:
        return self.max_params

    def _batches(
        self,
        ex: Executor,
        rows: Sequence[Sequence[Any]],
        fixed: int,
        per_row: int,
        copies: int = 1,
    ) -> Iterator[Sequence[Sequence[Any]]]:
        """Slices of ``rows`` whose statements stay within the connection's budget.

        ``fixed`` is the SQL text around the rows, ``per_row`` the SQL text per row besides
        its values (parentheses, placeholders, ``UNION ALL SELECT``), ``copies`` how many
        times the statement carries each row.
        """
        server = self.server(ex)
        copies = max(1, copies)
        budget = (server.statement_budget - fixed) // copies
        start, size = 0, 0
        for i, row in enumerate(rows):
            row_size = per_row + sum(map(_literal_size, row))
            if size + row_size > budget and i > start:
                yield rows[start:i]
                start, size = i, 0
            if fixed + row_size * copies > server.max_packet:  # too large even alone?
                self._check_alone(server, row, fixed, per_row, copies)
            size += row_size
        if start < len(rows):
            yield rows[start:]

    @staticmethod
    def _check_alone(
        server: _Server, row: Sequence[Any], fixed: int, per_row: int, copies: int
    ) -> None:
        """Raise RowTooLarge for a row whose statement would be over max_allowed_packet.

        Sent, it would not come back as the record's error: the server drops the
        connection (error 1153, or 2006/2013 when the drop comes first), which reads as a
        network failure. Its size is measured exactly here, as the driver will escape it.
        """
        size = fixed + copies * (per_row + sum(map(_exact_literal_size, row)))
        if size > server.max_packet:
            raise RowTooLarge(
                f"a statement of {size:,} bytes for one row: over "
                f"{'MariaDB' if server.mariadb else 'MySQL'}'s max_allowed_packet "
                f"({server.max_packet:,} bytes)"
            )

    def _each_values_batch(
        self,
        ex: Executor,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        build: Callable[[str], str],
    ) -> None:
        fixed = len(build(""))
        for batch in self._batches(ex, rows, fixed, 4 * len(columns) + 4):
            params = [v for row in batch for v in row]
            ex.execute(build(self._values(len(columns), len(batch))), params)

    @staticmethod
    def _derived(ncols: int, nrows: int, first: int = 0) -> str:
        """``SELECT %s AS c0, … UNION ALL SELECT %s, …``: rows as a derived table."""
        head = "SELECT " + ", ".join(f"%s AS c{first + i}" for i in range(ncols))
        return head + (" UNION ALL SELECT " + ", ".join(["%s"] * ncols)) * (nrows - 1)

    def _key_in(self, key: Sequence[str], nrows: int, prefix: str = "") -> str:
        if len(key) == 1:
            return f"{prefix}{self.quote(key[0])} IN ({', '.join(['%s'] * nrows)})"
        cols = ", ".join(prefix + self.quote(c) for c in key)
        return f"({cols}) IN ({self._values(len(key), nrows)})"

    # -- writes -----------------------------------------------------------------------------------
    def _on_duplicate(self, ex: Executor, t: TableInfo, sets: Sequence[tuple[str, str]]) -> str:
        """`` [AS new] ON DUPLICATE KEY UPDATE c = <expr of the new row's value>, …``.

        ``sets`` holds (column, template) with ``{new}`` standing for the new row's value.
        """
        alias = self.server(ex).row_alias
        parts = []
        for col, template in sets:
            new = (
                f"{self.quote(_ALIAS)}.{self.quote(col)}" if alias else f"VALUES({self.quote(col)})"
            )
            parts.append(f"{self.quote(col)} = {template.format(new=new, old=self._old(t, col))}")
        head = f" AS {self.quote(_ALIAS)}" if alias else ""
        return f"{head} ON DUPLICATE KEY UPDATE {', '.join(parts)}"

    def _old(self, t: TableInfo, col: str) -> str:
        return f"{t.sql}.{self.quote(col)}"

    def _noop(self, key: Sequence[str]) -> str:
        k = self.quote(key[0])
        return f" ON DUPLICATE KEY UPDATE {k} = {k}"

    def upsert(
        self,
        ex: Executor,
        t: TableInfo,
        key: Sequence[str],
        columns: Sequence[str],
        update: Sequence[str],
        rows: Sequence[Sequence[Any]],
    ) -> None:
        self._require_unique(t, key, "Upsert")
        head = f"INSERT INTO {t.sql} ({self.columns_sql(columns)}) VALUES "  # noqa: S608
        tail = self._on_duplicate(ex, t, [(c, "{new}") for c in update]) if update else ""
        tail = tail or self._noop(key)
        self._each_values_batch(ex, columns, rows, lambda values: head + values + tail)

    def increment(
        self,
        ex: Executor,
        t: TableInfo,
        key: Sequence[str],
        columns: Sequence[str],
        add: Sequence[str],
        rows: Sequence[Sequence[Any]],
        create: bool,
    ) -> None:
        if create:
            self._require_unique(t, key, "Increment")
            head = f"INSERT INTO {t.sql} ({self.columns_sql(columns)}) VALUES "  # noqa: S608
            tail = self._on_duplicate(ex, t, [(c, "{old} + {new}") for c in add])
            self._each_values_batch(ex, columns, rows, lambda values: head + values + tail)
            return
        cols = [*key, *add]
        idx = [list(columns).index(c) for c in cols]
        narrowed = [tuple(row[i] for i in idx) for row in rows]
        nkey = len(key)
        match = " AND ".join(f"v.c{i} = {t.sql}.{self.quote(c)}" for i, c in enumerate(key))
        for batch in self._batches(ex, narrowed, 200, 5 * len(cols) + 120, len(add) + 1):
            derived = self._derived(len(cols), len(batch))
            sets = ", ".join(
                f"{self.quote(c)} = {self.quote(c)} + "  # noqa: S608
                f"(SELECT SUM(v.c{nkey + i}) FROM ({derived}) AS v WHERE {match})"
                for i, c in enumerate(add)
            )
            sql = f"UPDATE {t.sql} SET {sets} WHERE {self._key_in(key, len(batch))}"  # noqa: S608
            flat = [v for row in batch for v in row]
            params = flat * len(add) + [v for row in batch for v in row[:nkey]]
            ex.execute(sql, params)

    def delete(
        self, ex: Executor, t: TableInfo, key: Sequence[str], keys: Sequence[Sequence[Any]]
    ) -> None:
        for batch in self._batches(ex, keys, 100, 4 * len(key) + 4):
            sql = f"DELETE FROM {t.sql} WHERE {self._key_in(key, len(batch))}"  # noqa: S608
            ex.execute(sql, [v for k in batch for v in k])

    # -- lookups (see _mysql_lookups) -----------------------------------------------------------
    lookup_select = lookup_select
    lookup_insert = lookup_insert
