"""The MySQL/MariaDB dialect against a real server: errors, strict mode, writes, lookups.

Every classified error is provoked on the server (no hand-built exceptions), so a change in
how the driver reports a number shows up here. The core behaviour (isolation, resume,
dead letters) is also covered by the suites parametrized over ``db_url``.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pymysql
import pytest
import sqlalchemy as sa

import batchline as bl
from batchline._database import Session
from batchline._dialects import ErrorKind, TableInfo
from batchline._dialects._mysql import MySQLDialect, parse_server
from batchline.testing import capture_statements

pytestmark = pytest.mark.mysql


@pytest.fixture
def mysql_engine(mysql_url: str) -> Iterator[sa.Engine]:
    eng = sa.create_engine(mysql_url, poolclass=sa.pool.NullPool)
    yield eng
    eng.dispose()


def _connect(url: str, **kwargs: Any) -> pymysql.connections.Connection[Any]:
    u = sa.make_url(url)
    args: dict[str, Any] = {
        "host": u.host,
        "port": u.port or 3306,
        "user": u.username,
        "password": u.password or "",
        "database": u.database,
        "connect_timeout": 5,
    }
    args.update(kwargs)
    return pymysql.connect(**args)


def _ddl(engine: sa.Engine, *statements: str) -> None:
    with engine.begin() as conn:
        for sql in statements:
            conn.exec_driver_sql(sql)


def _rows(engine: sa.Engine, sql: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.exec_driver_sql(sql)]


def _provoke(url: str, setup: list[str], failing: str) -> BaseException:
    conn = _connect(url)
    try:
        with conn.cursor() as cur:
            for sql in setup:
                cur.execute(sql)
            try:
                cur.execute(failing)
            except pymysql.err.Error as exc:
                caught: BaseException = exc
                return caught
    finally:
        conn.close()
    raise AssertionError(f"{failing!r} did not fail")


_TABLES = [
    "CREATE TABLE parent (id INT PRIMARY KEY) ENGINE=InnoDB",
    "CREATE TABLE child (id INT PRIMARY KEY, parent_id INT,"
    " CONSTRAINT fk_child FOREIGN KEY (parent_id) REFERENCES parent(id)) ENGINE=InnoDB",
    "CREATE TABLE t (id INT PRIMARY KEY, code VARCHAR(3), small TINYINT, n INT NOT NULL"
    " DEFAULT 0, at DATETIME, kind ENUM('a','b'), u INT UNSIGNED,"
    " CONSTRAINT ck_small CHECK (small >= 0)) ENGINE=InnoDB",
    "INSERT INTO parent VALUES (1)",
    "INSERT INTO child VALUES (1, 1)",
    "INSERT INTO t (id, u) VALUES (1, 1)",
]

_DATA_CASES = {
    "duplicate key": ("INSERT INTO t (id) VALUES (1)", {1062}),
    "foreign key child": ("INSERT INTO child VALUES (2, 99)", {1452}),
    "foreign key parent": ("DELETE FROM parent WHERE id = 1", {1451}),
    "check": ("INSERT INTO t (id, small) VALUES (2, -1)", {3819, 4025}),
    "data too long": ("INSERT INTO t (id, code) VALUES (2, 'abcd')", {1406}),
    "out of range": ("INSERT INTO t (id, small) VALUES (2, 1000)", {1264}),
    "bad value": ("INSERT INTO t (id, n) VALUES (2, 'abc')", {1366}),
    "not null": ("INSERT INTO t (id, n) VALUES (2, NULL)", {1048}),
    "bad datetime": ("INSERT INTO t (id, at) VALUES (2, '2026-13-45 10:00')", {1292}),
    "truncated enum": ("INSERT INTO t (id, kind) VALUES (2, 'zz')", {1265}),
    "column count": ("INSERT INTO t (id, n) VALUES (2)", {1136}),
    "arithmetic out of range": ("UPDATE t SET u = u - 5 WHERE id = 1", {1690}),
}
_FATAL_CASES = {
    "no such table": ("INSERT INTO nowhere VALUES (1)", {1146}),
    "unknown column": ("INSERT INTO t (id, nope) VALUES (3, 1)", {1054}),
    "syntax": ("INSERT INTO t VALUES (", {1064}),
}


@pytest.mark.parametrize("case", sorted(_DATA_CASES))
def test_record_errors_provoked_on_the_server_are_data(
    case: str, mysql_url: str, mysql_engine: sa.Engine
) -> None:
    failing, numbers = _DATA_CASES[case]
    exc = _provoke(mysql_url, _TABLES, failing)
    assert exc.args[0] in numbers
    c = MySQLDialect(mysql_engine).classify(exc)
    assert c.kind is ErrorKind.DATA
    assert c.code == str(exc.args[0])
    assert c.message.startswith(f"({exc.args[0]}) ")


@pytest.mark.parametrize("case", sorted(_FATAL_CASES))
def test_setup_errors_provoked_on_the_server_are_fatal(
    case: str, mysql_url: str, mysql_engine: sa.Engine
) -> None:
    failing, numbers = _FATAL_CASES[case]
    exc = _provoke(mysql_url, _TABLES, failing)
    assert exc.args[0] in numbers
    assert MySQLDialect(mysql_engine).classify(exc).kind is ErrorKind.FATAL


def test_permission_errors_are_fatal(mysql_url: str, mysql_engine: sa.Engine) -> None:
    user = f"bt_{secrets.token_hex(4)}"
    password = secrets.token_hex(8)
    database = sa.make_url(mysql_url).database
    _ddl(
        mysql_engine,
        "CREATE TABLE t (id INT PRIMARY KEY) ENGINE=InnoDB",
        f"CREATE USER '{user}'@'%%' IDENTIFIED BY '{password}'",
        f"CREATE USER '{user}'@'localhost' IDENTIFIED BY '{password}'",
        f"GRANT SELECT ON `{database}`.* TO '{user}'@'%%'",
        f"GRANT SELECT ON `{database}`.* TO '{user}'@'localhost'",
    )
    dialect = MySQLDialect(mysql_engine)
    found: dict[int, ErrorKind] = {}
    try:
        conn = _connect(mysql_url, user=user, password=password)
        try:
            with conn.cursor() as cur, pytest.raises(pymysql.err.Error) as denied:
                cur.execute("INSERT INTO t VALUES (1)")
            found[denied.value.args[0]] = dialect.classify(denied.value).kind
        finally:
            conn.close()
        with pytest.raises(pymysql.err.Error) as bad_password:
            _connect(mysql_url, user=user, password="wrong")
        found[bad_password.value.args[0]] = dialect.classify(bad_password.value).kind
        with pytest.raises(pymysql.err.Error) as no_database:
            _connect(mysql_url, user=user, password=password, database="mysql")
        found[no_database.value.args[0]] = dialect.classify(no_database.value).kind
    finally:
        _ddl(mysql_engine, f"DROP USER '{user}'@'%%'", f"DROP USER '{user}'@'localhost'")
    assert found == {1142: ErrorKind.FATAL, 1045: ErrorKind.FATAL, 1044: ErrorKind.FATAL}


def test_deadlock_between_two_connections_is_transient(
    mysql_url: str, mysql_engine: sa.Engine
) -> None:
    _ddl(
        mysql_engine,
        "CREATE TABLE d (id INT PRIMARY KEY, n INT) ENGINE=InnoDB",
        "INSERT INTO d VALUES (1, 0), (2, 0)",
    )
    a, b = _connect(mysql_url), _connect(mysql_url)
    errors: list[BaseException] = []
    try:
        with a.cursor() as ca, b.cursor() as cb:
            for cur in (ca, cb):
                cur.execute("SET SESSION innodb_lock_wait_timeout = 10")
            ca.execute("UPDATE d SET n = 1 WHERE id = 1")
            cb.execute("UPDATE d SET n = 1 WHERE id = 2")

            def a_waits() -> None:
                try:
                    ca.execute("UPDATE d SET n = 2 WHERE id = 2")
                except pymysql.err.Error as exc:
                    errors.append(exc)

            waiting = threading.Thread(target=a_waits)
            waiting.start()
            threading.Event().wait(0.3)  # let A queue for B's lock
            try:
                cb.execute("UPDATE d SET n = 2 WHERE id = 1")
            except pymysql.err.Error as exc:
                errors.append(exc)
            b.rollback()
            waiting.join(15)
            a.rollback()
    finally:
        a.close()
        b.close()
    assert [e.args[0] for e in errors] == [1213]
    assert MySQLDialect(mysql_engine).classify(errors[0]).kind is ErrorKind.TRANSIENT


def test_lock_wait_timeout_is_transient(mysql_url: str, mysql_engine: sa.Engine) -> None:
    _ddl(
        mysql_engine,
        "CREATE TABLE d (id INT PRIMARY KEY, n INT) ENGINE=InnoDB",
        "INSERT INTO d VALUES (1, 0)",
    )
    holder, waiter = _connect(mysql_url), _connect(mysql_url)
    try:
        with holder.cursor() as ch, waiter.cursor() as cw:
            ch.execute("UPDATE d SET n = 1 WHERE id = 1")
            cw.execute("SET SESSION innodb_lock_wait_timeout = 1")
            with pytest.raises(pymysql.err.Error) as timeout:
                cw.execute("UPDATE d SET n = 2 WHERE id = 1")
        holder.rollback()
    finally:
        holder.close()
        waiter.close()
    assert timeout.value.args[0] == 1205
    assert MySQLDialect(mysql_engine).classify(timeout.value).kind is ErrorKind.TRANSIENT


def test_a_killed_connection_is_transient(mysql_url: str, mysql_engine: sa.Engine) -> None:
    victim, killer = _connect(mysql_url), _connect(mysql_url)
    try:
        with killer.cursor() as ck:
            ck.execute(f"KILL {victim.thread_id()}")
        with victim.cursor() as cv, pytest.raises(pymysql.err.Error) as lost:
            cv.execute("SELECT 1")
    finally:
        killer.close()
        victim.close()
    assert lost.value.args[0] in (2006, 2013, 1927)
    assert MySQLDialect(mysql_engine).classify(lost.value).kind is ErrorKind.TRANSIENT
    closed = pymysql.err.InterfaceError(0, "")
    assert MySQLDialect(mysql_engine).classify(closed).kind is ErrorKind.TRANSIENT
    assert MySQLDialect(mysql_engine).classify(BrokenPipeError()).kind is ErrorKind.TRANSIENT


def test_values_the_driver_cannot_send_fail_their_record(
    mysql_url: str, mysql_engine: sa.Engine
) -> None:
    _ddl(mysql_engine, "CREATE TABLE v (id INT PRIMARY KEY, x DOUBLE, tag VARCHAR(20))")
    pipeline = bl.Pipeline(mysql_url, writes=[bl.Insert("v")], chunk_size=10)
    rows = [
        {"id": 1, "x": 1.5, "tag": "ok"},
        {"id": 2, "x": float("nan"), "tag": "nan"},
        {"id": 3, "x": 2.5, "tag": ["a", "list"]},
        {"id": 4, "x": 3.5, "tag": "ok"},
    ]
    result = pipeline.run(rows)
    pipeline.close()
    assert result.status == "partial_success"
    assert [(f.position, f.error_class) for f in result.failed_items or []] == [
        (2, "ProgrammingError"),
        (3, "TypeError"),
    ]
    assert _rows(mysql_engine, "SELECT id FROM v ORDER BY id") == [(1,), (4,)]


# -- sessions: strict mode, engines, what batchline leaves behind ---------------------------


def test_a_server_without_strict_mode_is_refused_at_start(
    mysql_url: str, mysql_engine: sa.Engine
) -> None:
    _ddl(mysql_engine, "CREATE TABLE s (id INT PRIMARY KEY, code VARCHAR(3))")
    lenient = sa.make_url(mysql_url).update_query_dict(
        {"init_command": "SET SESSION sql_mode='NO_ENGINE_SUBSTITUTION'"}
    )
    pipeline = bl.Pipeline(lenient, writes=[bl.Insert("s")])
    with pytest.raises(bl.ConfigError, match="strict SQL mode") as refused:
        pipeline.run([{"id": 1, "code": "much too long"}])
    pipeline.close()
    assert "sql_mode" in str(refused.value)
    assert "STRICT_TRANS_TABLES" in str(refused.value)
    assert _rows(mysql_engine, "SELECT COUNT(*) FROM s") == [(0,)]


def test_a_non_transactional_table_is_refused(mysql_url: str, mysql_engine: sa.Engine) -> None:
    _ddl(mysql_engine, "CREATE TABLE m (id INT PRIMARY KEY) ENGINE=MyISAM")
    pipeline = bl.Pipeline(mysql_url, writes=[bl.Insert("m")])
    with pytest.raises(bl.ConfigError, match=r"MyISAM.*InnoDB"):
        pipeline.run([{"id": 1}])
    pipeline.close()


def test_the_pooled_connection_gets_its_settings_back(
    mysql_url: str, mysql_engine: sa.Engine
) -> None:
    _ddl(mysql_engine, "CREATE TABLE p (id INT PRIMARY KEY)")
    engine = sa.create_engine(mysql_url, pool_size=1, max_overflow=0, isolation_level="AUTOCOMMIT")
    try:
        with bl.Pipeline(engine, writes=[bl.Insert("p")]) as pipeline:
            seen: list[tuple[Any, ...]] = []
            probe = "SELECT @@SESSION.autocommit, @@SESSION.tx_isolation"

            def during(record: dict[str, Any], out: bl.Out) -> None:
                out.insert("p", record)

            assert pipeline.run([{"id": 1}, {"id": 2}], during).status == "success"
            raw = engine.raw_connection()
            try:
                cur = raw.cursor()
                cur.execute(probe)
                row = cur.fetchone()
                assert row is not None
                seen.append(tuple(row))
            finally:
                raw.close()
        assert seen == [(1, "REPEATABLE-READ")]
    finally:
        engine.dispose()
    assert _rows(mysql_engine, "SELECT id FROM p ORDER BY id") == [(1,), (2,)]


def test_batchline_sessions_read_committed_without_autocommit(mysql_engine: sa.Engine) -> None:
    dialect = MySQLDialect(mysql_engine)
    session = Session(mysql_engine, dialect)
    try:
        session.begin()
        assert session.query("SELECT @@SESSION.autocommit, @@SESSION.tx_isolation") == [
            (0, "READ-COMMITTED")
        ]
        session.commit()
    finally:
        session.close()


# -- writes ---------------------------------------------------------------------------------


def test_upsert_updates_the_named_columns_and_inserts_the_rest(
    mysql_url: str, mysql_engine: sa.Engine
) -> None:
    _ddl(
        mysql_engine,
        "CREATE TABLE u (a INT, b VARCHAR(10), name VARCHAR(20), hits INT, PRIMARY KEY (a, b))",
        "INSERT INTO u VALUES (1, 'x', 'old', 5), (2, 'y', 'keep', 7)",
    )
    rows = [
        {"a": 1, "b": "x", "name": "new", "hits": 50},
        {"a": 3, "b": "z", "name": "fresh", "hits": 1},
        {"a": 1, "b": "x", "name": "newer", "hits": 60},
    ]
    with bl.Pipeline(mysql_url, writes=[bl.Upsert("u", key=["a", "b"], update=["name"])]) as p:
        assert p.run(rows).status == "success"
    with bl.Pipeline(mysql_url, writes=[bl.Upsert("u", key=["a", "b"], update=())]) as p:
        assert p.run([{"a": 2, "b": "y", "name": "ignored", "hits": 0}]).status == "success"
    assert _rows(mysql_engine, "SELECT a, b, name, hits FROM u ORDER BY a") == [
        (1, "x", "newer", 5),
        (2, "y", "keep", 7),
        (3, "z", "fresh", 1),
    ]


def test_upsert_on_a_key_without_unique_index_is_refused(
    mysql_url: str, mysql_engine: sa.Engine
) -> None:
    _ddl(mysql_engine, "CREATE TABLE nu (id INT PRIMARY KEY AUTO_INCREMENT, email VARCHAR(50))")
    with (
        bl.Pipeline(mysql_url, writes=[bl.Upsert("nu", key="email")]) as p,
        pytest.raises(bl.FatalDatabaseError, match="UNIQUE index"),
    ):
        p.run([{"email": "a@example.com"}])
    assert _rows(mysql_engine, "SELECT COUNT(*) FROM nu") == [(0,)]


def test_increment_adds_and_creates_in_one_statement(
    mysql_url: str, mysql_engine: sa.Engine
) -> None:
    _ddl(
        mysql_engine,
        "CREATE TABLE inv (item VARCHAR(10) PRIMARY KEY, qty INT NOT NULL, cost DECIMAL(10,2))",
        "INSERT INTO inv VALUES ('a', 10, 1.00)",
    )
    rows = [
        {"item": k, "qty": q, "cost": Decimal("0.50")} for k, q in [("a", 1), ("b", 2), ("a", 3)]
    ]
    pipeline = bl.Pipeline(
        mysql_url, writes=[bl.Increment("inv", key="item", columns=["qty", "cost"])]
    )
    with capture_statements(pipeline) as captured:
        assert pipeline.run(rows).status == "success"
    pipeline.close()
    assert len(captured.matching("ON DUPLICATE KEY UPDATE")) == 1
    assert _rows(mysql_engine, "SELECT item, qty, cost FROM inv ORDER BY item") == [
        ("a", 14, pytest.approx(2.0)),
        ("b", 2, pytest.approx(0.5)),
    ]


def test_increment_without_create_counts_keys_the_collation_calls_equal(
    mysql_url: str, mysql_engine: sa.Engine
) -> None:
    # 'abc' and 'ABC' are two keys to Python but one row to a *_ci column: a multi-table
    # UPDATE … JOIN would apply only one of them.
    _ddl(
        mysql_engine,
        "CREATE TABLE ci (code VARCHAR(10) COLLATE utf8mb4_general_ci PRIMARY KEY,"
        " n INT NOT NULL, m INT NOT NULL)",
        "INSERT INTO ci VALUES ('abc', 0, 0), ('def', 0, 0)",
    )
    rows = [
        {"code": "abc", "n": 1, "m": 10},
        {"code": "ABC", "n": 2, "m": 20},
        {"code": "def", "n": 4, "m": 40},
        {"code": "missing", "n": 8, "m": 80},
    ]
    pipeline = bl.Pipeline(
        mysql_url, writes=[bl.Increment("ci", key="code", columns=["n", "m"], create=False)]
    )
    with capture_statements(pipeline) as captured:
        assert pipeline.run(rows).status == "success"
    pipeline.close()
    assert len(captured.matching("UPDATE ci SET")) == 1
    assert _rows(mysql_engine, "SELECT code, n, m FROM ci ORDER BY code") == [
        ("abc", 3, 30),
        ("def", 4, 40),
    ]


def test_delete_removes_keys_in_sets(mysql_url: str, mysql_engine: sa.Engine) -> None:
    _ddl(
        mysql_engine,
        "CREATE TABLE one (id INT PRIMARY KEY)",
        "CREATE TABLE two (a INT, b INT, PRIMARY KEY (a, b))",
        "INSERT INTO one VALUES (1), (2), (3)",
        "INSERT INTO two VALUES (1, 1), (1, 2), (2, 1)",
    )

    def deletes(record: dict[str, Any], out: bl.Out) -> None:
        out.delete("one", {"id": record["id"]})
        out.delete("two", {"a": record["id"], "b": 1})

    pipeline = bl.Pipeline(
        mysql_url, writes=[bl.Delete("one", key="id"), bl.Delete("two", key=["a", "b"])]
    )
    with capture_statements(pipeline) as captured:
        assert pipeline.run([{"id": 1}, {"id": 2}], deletes).status == "success"
    pipeline.close()
    assert len(captured.matching("DELETE FROM one WHERE")) == 1
    assert len(captured.matching("DELETE FROM two WHERE")) == 1
    assert _rows(mysql_engine, "SELECT id FROM one") == [(3,)]
    assert _rows(mysql_engine, "SELECT a, b FROM two") == [(1, 2)]


def test_inserts_are_split_to_fit_max_allowed_packet(mysql_engine: sa.Engine) -> None:
    _ddl(mysql_engine, "CREATE TABLE big (id INT PRIMARY KEY, body TEXT)")
    dialect = MySQLDialect(mysql_engine)
    sizes: list[int] = []
    session = Session(mysql_engine, dialect, [lambda sql, rows: sizes.append(len(sql))])
    try:
        session.begin()
        with mysql_engine.connect() as conn:
            table = dialect.reflect(conn, "big")
        dialect.server(session).max_packet = 64 * 1024  # as if the server allowed only 64 KiB
        rows = [(i, "x" * 1000) for i in range(200)]
        dialect.insert(session, table, ["id", "body"], rows)
        session.commit()
    finally:
        session.close()
    # 200 rows of ~2 KiB (escaped, at worst) in statements of at most 32 KiB.
    assert len(sizes) >= 200 * 2004 // (32 * 1024)
    assert _rows(mysql_engine, "SELECT COUNT(*), SUM(LENGTH(body)) FROM big") == [(200, 200_000)]


def test_the_row_alias_form_is_used_on_mysql_8(mysql_engine: sa.Engine) -> None:
    # No MySQL 8 server here: check what that server would be sent, and when.
    assert parse_server("8.0.36", 1 << 24, False).row_alias
    assert not parse_server("8.0.18", 1 << 24, False).row_alias
    assert not parse_server("10.11.6-MariaDB-0+deb12u1", 1 << 24, False).row_alias
    assert parse_server("10.11.6-MariaDB-0+deb12u1", 1 << 24, False).returning
    assert not parse_server("10.4.2-MariaDB", 1 << 24, False).returning
    dialect = MySQLDialect(mysql_engine)
    session = Session(mysql_engine, dialect)
    try:
        server = dialect.server(session)
        server.mariadb, server.version = False, (8, 0, 36)
        clause = dialect._on_duplicate(session, TableInfo("inv", "inv"), [("qty", "{old} + {new}")])
    finally:
        session.close()
    assert clause == " AS batchline_new ON DUPLICATE KEY UPDATE qty = inv.qty + batchline_new.qty"


# -- lookups --------------------------------------------------------------------------------


def _catalog(engine: sa.Engine) -> None:
    _ddl(
        engine,
        "CREATE TABLE catalog (id INT AUTO_INCREMENT PRIMARY KEY,"
        " sku VARCHAR(20) COLLATE utf8mb4_general_ci NOT NULL UNIQUE, name VARCHAR(50) NOT NULL)",
        "CREATE TABLE lines_ (n INT PRIMARY KEY, item_id INT NOT NULL)",
        "INSERT INTO catalog (id, sku, name) VALUES (7, 'abc', 'Widget')",
    )


def _lookup_run(url: str, skus: list[str]) -> bl.Result:
    catalog = bl.Lookup("catalog", key="sku", returns="id", create=True)

    def mapping(record: dict[str, Any], out: bl.Out) -> None:
        item = catalog.ref(sku=record["sku"], name=record.get("name", "made by the run"))
        out.insert("lines_", {"n": record["n"], "item_id": item})

    with bl.Pipeline(url, writes=[bl.Insert("lines_")], lookups=[catalog]) as pipeline:
        records = [{"n": i, "sku": s} for i, s in enumerate(skus, start=1)]
        return pipeline.run(records, mapping)


@pytest.mark.parametrize("returning", [True, False], ids=["returning", "select-after"])
def test_lookups_map_case_insensitive_matches_back_to_the_requested_keys(
    returning: bool, mysql_url: str, mysql_engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    _catalog(mysql_engine)
    if not returning:  # as on MySQL or MariaDB < 10.5, where INSERT cannot return rows
        monkeypatch.setattr(
            "batchline._dialects._mysql._Server.returning", property(lambda self: False)
        )
    result = _lookup_run(mysql_url, ["abc", "ABC", "Abc ", "NEW-1", "new-1", "NEW-2"])
    assert result.status == "success", result.failed_items
    catalog = _rows(mysql_engine, "SELECT id, sku FROM catalog ORDER BY id")
    assert catalog[0] == (7, "abc")
    assert sorted(s for _, s in catalog[1:]) == ["NEW-1", "NEW-2"]
    ids = {s: i for i, s in catalog}
    assert _rows(mysql_engine, "SELECT n, item_id FROM lines_ ORDER BY n") == [
        (1, 7),
        (2, 7),
        (3, 7),
        (4, ids["NEW-1"]),
        (5, ids["NEW-1"]),
        (6, ids["NEW-2"]),
    ]


def test_lookup_creation_fails_bad_rows_instead_of_ignoring_them(
    mysql_url: str, mysql_engine: sa.Engine
) -> None:
    _catalog(mysql_engine)
    catalog = bl.Lookup("catalog", key="sku", returns="id", create=True)

    def mapping(record: dict[str, Any], out: bl.Out) -> None:
        out.insert("lines_", {"n": record["n"], "item_id": catalog.ref(**record["ref"])})

    records = [
        {"n": 1, "ref": {"sku": "OK-1", "name": "fine"}},
        {"n": 2, "ref": {"sku": "BAD-1", "name": "x" * 80}},  # longer than VARCHAR(50)
        {"n": 3, "ref": {"sku": "OK-2", "name": "fine"}},
    ]
    with bl.Pipeline(mysql_url, writes=[bl.Insert("lines_")], lookups=[catalog]) as pipeline:
        result = pipeline.run(records, mapping)
    assert [(f.position, f.stage) for f in result.failed_items or []] == [(2, "lookup")]
    assert "1406" in (result.failed_items or [])[0].error
    assert _rows(mysql_engine, "SELECT sku FROM catalog ORDER BY sku") == [
        ("abc",),
        ("OK-1",),
        ("OK-2",),
    ]


def test_a_lookup_sees_a_row_another_worker_committed_mid_transaction(
    mysql_url: str, mysql_engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without RETURNING the flusher selects after the no-op insert; under REPEATABLE READ
    # that select would read the snapshot of the chunk's first read and miss the row.
    _catalog(mysql_engine)
    monkeypatch.setattr("batchline._dialects._mysql._Server.returning", property(lambda s: False))
    dialect = MySQLDialect(mysql_engine)
    with mysql_engine.connect() as conn:
        table = dialect.reflect(conn, "catalog")
    session = Session(mysql_engine, dialect)
    other = _connect(mysql_url)
    try:
        session.begin()
        assert dialect.lookup_select(session, table, ["sku"], "id", [("K-1",)]) == []
        with other.cursor() as cur:
            cur.execute("INSERT INTO catalog (id, sku, name) VALUES (42, 'K-1', 'theirs')")
        other.commit()
        created = dialect.lookup_insert(
            session, table, ["sku"], ["sku", "name"], "id", [("K-1", "ours")]
        )
        found = dialect.lookup_select(session, table, ["sku"], "id", [("K-1",)])
        session.commit()
    finally:
        other.close()
        session.close()
    assert created is None
    assert found == [("K-1", 42)]
    assert _rows(mysql_engine, "SELECT id, name FROM catalog WHERE sku = 'K-1'") == [(42, "theirs")]


# -- the guarantees, end to end ---------------------------------------------------------------


def _counting(engine: sa.Engine) -> Callable[[], list[tuple[Any, ...]]]:
    return lambda: _rows(engine, "SELECT k, n FROM counts ORDER BY k")


def test_a_connection_killed_mid_run_is_retried_without_doubling(
    mysql_url: str, mysql_engine: sa.Engine
) -> None:
    _ddl(
        mysql_engine,
        "CREATE TABLE events (id INT PRIMARY KEY)",
        "CREATE TABLE counts (k INT PRIMARY KEY, n INT NOT NULL)",
    )
    database = sa.make_url(mysql_url).database
    killed: list[int] = []

    def mapping(record: dict[str, Any], out: bl.Out) -> None:
        if record["id"] in (250, 700) and not killed.count(record["id"]):
            killed.append(record["id"])
            with mysql_engine.connect() as conn:
                others = conn.exec_driver_sql(
                    "SELECT ID FROM information_schema.PROCESSLIST "
                    "WHERE DB = %s AND ID <> CONNECTION_ID()",
                    (database,),
                ).all()
                for (pid,) in others:
                    conn.exec_driver_sql(f"KILL {int(pid)}")
        out.insert("events", {"id": record["id"]})
        out.increment("counts", {"k": record["id"] % 3, "n": 1})

    pipeline = bl.Pipeline(
        mysql_url,
        writes=[bl.Insert("events"), bl.Increment("counts", key="k", columns=["n"])],
        chunk_size=100,
        retry=bl.RetryPolicy(sleep=lambda s: None),
        pipelined=False,
    )
    with pipeline:
        result = pipeline.run(({"id": i} for i in range(1, 1001)), mapping, job="kill")
    assert result.status == "success", result.error
    assert result.retries >= 1
    assert _rows(mysql_engine, "SELECT COUNT(*) FROM events") == [(1000,)]
    assert _counting(mysql_engine)() == [(0, 333), (1, 334), (2, 333)]


def test_a_crashed_run_resumes_to_the_same_state_as_an_uninterrupted_one(
    mysql_url: str, mysql_engine: sa.Engine
) -> None:
    _ddl(
        mysql_engine,
        "CREATE TABLE events (id INT PRIMARY KEY)",
        "CREATE TABLE counts (k INT PRIMARY KEY, n INT NOT NULL)",
    )

    class Crash(Exception):
        pass

    def source(crash_at: int | None) -> Iterator[dict[str, Any]]:
        for i in range(1, 801):
            if i == crash_at:
                raise Crash
            yield {"id": i}

    def mapping(record: dict[str, Any], out: bl.Out) -> None:
        out.insert("events", record)
        out.increment("counts", {"k": record["id"] % 4, "n": 1})

    def pipeline() -> bl.Pipeline:
        return bl.Pipeline(
            mysql_url,
            writes=[bl.Insert("events"), bl.Increment("counts", key="k", columns=["n"])],
            chunk_size=64,
        )

    with pipeline() as p, pytest.raises(Crash):
        p.run(source(crash_at=517), mapping, job="resume", idempotency_key=lambda r: r["id"])
    assert _rows(mysql_engine, "SELECT COUNT(*) FROM events")[0][0] < 517
    with pipeline() as p:
        result = p.run(source(None), mapping, job="resume", idempotency_key=lambda r: r["id"])
    assert result.status == "success"
    assert result.resumed_from > 0
    assert _rows(mysql_engine, "SELECT COUNT(*), MIN(id), MAX(id) FROM events") == [(800, 1, 800)]
    assert _counting(mysql_engine)() == [(0, 200), (1, 200), (2, 200), (3, 200)]
    with pipeline() as p:  # the same records under another job: all duplicates
        again = p.run(source(None), mapping, job="again", idempotency_key=lambda r: r["id"])
    assert (again.items_processed, again.duplicates_skipped) == (0, 800)
    with bl.DeadLetters(mysql_url) as letters:
        assert [j.name for j in letters.jobs()] == ["resume", "again"]


def test_a_mariadb_url_may_send_local_files_as_a_mysql_url_may(mysql_url: str) -> None:
    """Both spellings get PyMySQL's local-file capability, which the bulk path's LOAD DATA
    LOCAL INFILE needs (without it every chunk would go as INSERTs, silently slower)."""
    from pymysql.constants import CLIENT

    from batchline._database import make_engine

    for url in (mysql_url, mysql_url.replace("mysql+pymysql://", "mariadb+pymysql://", 1)):
        engine, _ = make_engine(url)
        try:
            with engine.connect() as conn:
                flag = conn.connection.driver_connection.client_flag  # type: ignore[union-attr]
        finally:
            engine.dispose()
        assert flag & CLIENT.LOCAL_FILES, url
