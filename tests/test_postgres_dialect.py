"""PostgreSQL specifics against a real server: the two insert paths and mixed-type columns.

Inserts below ``copy_from_rows`` rows go as an ``unnest`` INSERT inside the pipeline (no
round trip of their own); bigger ones, and tables with array columns, go by COPY. Both
paths must land the same rows and dead-letter the same bad record.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

import batchline as bl
from batchline._dialects._postgres import PostgresDialect
from batchline._dialects._postgres_arrays import array_params
from batchline.testing import capture_statements

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg(postgres_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(postgres_url, poolclass=sa.pool.NullPool)
    md = sa.MetaData()
    sa.Table(
        "items",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("amount", sa.Numeric(12, 3), nullable=False),
        sa.Column("label", sa.Text, nullable=False),
        sa.CheckConstraint("amount >= 0", name="ck_items_amount"),
    )
    sa.Table(
        "tagged",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("tags", postgresql.ARRAY(sa.Integer), nullable=False),
    )
    sa.Table(
        "totals",
        md,
        sa.Column("label", sa.Text, primary_key=True),
        sa.Column("amount", sa.Numeric(12, 3), nullable=False),
    )
    md.create_all(engine)
    yield engine
    engine.dispose()


def _rows(n: int, bad: int) -> list[dict[str, Any]]:
    return [
        {"id": i, "amount": -1 if i == bad else Decimal(i) / 4, "label": f"item {i}"}
        for i in range(1, n + 1)
    ]


@pytest.mark.parametrize("copy_from_rows", [0, 10_000], ids=["copy", "unnest-insert"])
def test_both_insert_paths_land_rows_and_dead_letter_the_bad_one(
    postgres_url: str, pg: sa.Engine, monkeypatch: pytest.MonkeyPatch, copy_from_rows: int
) -> None:
    monkeypatch.setattr(PostgresDialect, "copy_from_rows", copy_from_rows)
    pipeline = bl.Pipeline(postgres_url, writes=[bl.Insert("items")], chunk_size=100)
    with capture_statements(pipeline) as sent:
        result = pipeline.run(_rows(250, bad=137))
    assert result.items_processed == 249
    assert [f.position for f in result.failed_items] == [137]
    assert "ck_items_amount" in result.failed_items[0].error
    # the first try of each chunk takes the path its size selects; isolation tries use COPY,
    # which names the failing line
    firsts = [sql for sql, _ in sent.statements if sql.startswith(("COPY", "INSERT INTO items"))]
    assert firsts[0].startswith("COPY") is (copy_from_rows == 0)
    with pg.connect() as conn:
        got = conn.execute(sa.text("SELECT count(*), sum(amount) FROM items")).one()
    assert got == (249, sum(Decimal(i) / 4 for i in range(1, 251) if i != 137))


def test_array_columns_go_by_copy(postgres_url: str, pg: sa.Engine) -> None:
    # unnest() would flatten an int[][] parameter into single ints.
    pipeline = bl.Pipeline(postgres_url, writes=[bl.Insert("tagged")])
    with capture_statements(pipeline) as sent:
        result = pipeline.run([{"id": 1, "tags": [1, 2]}, {"id": 2, "tags": [3]}])
    assert result.status == "success"
    assert sent.matching("COPY ")
    with pg.connect() as conn:
        got = conn.execute(sa.text("SELECT id, tags FROM tagged ORDER BY id")).all()
    assert got == [(1, [1, 2]), (2, [3])]


def test_a_column_mixing_value_types_loads_without_isolation(
    postgres_url: str, pg: sa.Engine
) -> None:
    # psycopg refuses a list of mixed types; batchline sends such a column as numbers or text,
    # so the chunk is not mistaken for bad data and bisected.
    rows = [
        {"id": 1, "amount": 1, "label": "a"},
        {"id": 2, "amount": 2.5, "label": 7},
        {"id": 3, "amount": Decimal("0.125"), "label": "c"},
        {"id": 4, "amount": 3, "label": "e"},
    ]
    result = bl.Pipeline(postgres_url, writes=[bl.Insert("items")]).run(rows)
    assert result.status == "success"
    assert result.isolation_flushes == 0  # not mistaken for bad data
    with pg.connect() as conn:
        got = conn.execute(sa.text("SELECT id, amount, label FROM items ORDER BY id")).all()
    assert got == [
        (1, Decimal("1.000"), "a"),
        (2, Decimal("2.500"), "7"),
        (3, Decimal("0.125"), "c"),
        (4, Decimal("3.000"), "e"),
    ]


def test_mixed_types_in_increments_are_summed_and_sent_as_numbers(
    postgres_url: str, pg: sa.Engine
) -> None:
    # key 0 sums ints, key 1 floats: the increment's amount array mixes the two
    rows = [{"id": k % 2, "amount": 1 if k % 2 == 0 else 0.5, "label": "x"} for k in range(30)]
    pipeline = bl.Pipeline(
        postgres_url, writes=[bl.Increment("items", key="id", columns=["amount"])]
    )
    result = pipeline.run(rows)
    assert result.status == "success"
    assert result.isolation_flushes == 0
    with pg.connect() as conn:
        got = {r[0]: r[1] for r in conn.execute(sa.text("SELECT id, amount FROM items"))}
    expected: dict[int, Decimal] = {}
    for r in rows:
        expected[r["id"]] = expected.get(r["id"], Decimal(0)) + Decimal(repr(r["amount"]))
    assert got == expected


def test_isolating_a_bad_row_leaves_no_driver_warnings(
    postgres_url: str, pg: sa.Engine, caplog: pytest.LogCaptureFixture
) -> None:
    # The bad row fails inside psycopg's pipeline; leaving the aborted pipeline is expected
    # and must not surface as psycopg's "error ignored terminating" warning.
    with caplog.at_level(logging.WARNING, logger="psycopg"):
        result = bl.Pipeline(postgres_url, writes=[bl.Insert("items")]).run(_rows(50, bad=20))
    assert [f.position for f in result.failed_items] == [20]
    assert [r.getMessage() for r in caplog.records if r.name.startswith("psycopg")] == []


def test_a_dead_letter_names_the_write_that_failed(postgres_url: str, pg: sa.Engine) -> None:
    # The insert's error would otherwise surface at the pipelined increment after it.
    pipeline = bl.Pipeline(
        postgres_url,
        writes=[bl.Insert("items"), bl.Increment("totals", key="label", columns=["amount"])],
    )

    def map_row(record: dict[str, Any], out: bl.Out) -> None:
        out.insert("items", record)
        out.increment("totals", {"label": "all", "amount": 1})

    for _ in range(3):
        with pg.begin() as conn:
            conn.execute(sa.text("TRUNCATE items, totals"))
        result = pipeline.run(_rows(50, bad=20), map_row)
        [failed] = result.failed_items
        assert failed.error.startswith("insert items: "), failed.error
        assert "ck_items_amount" in failed.error


TRICKY = [
    "plain",
    "with space",
    "comma,inside",
    'quote"inside',
    "back\\slash",
    "{braces}",
    "",
    "NULL",
    "null",
    "tab\there",
    "line\nbreak",
    "ünïcode ✓",
]


@pytest.mark.parametrize("copy_from_rows", [0, 10_000], ids=["copy", "unnest-insert"])
def test_text_values_arrive_exactly_whatever_they_contain(
    postgres_url: str, pg: sa.Engine, monkeypatch: pytest.MonkeyPatch, copy_from_rows: int
) -> None:
    # Plain columns go as one array literal; a value that would need quoting in it must
    # make batchline send that column value by value instead, never garble it.
    monkeypatch.setattr(PostgresDialect, "copy_from_rows", copy_from_rows)
    rows = [{"id": i, "amount": Decimal(i) / 8, "label": text} for i, text in enumerate(TRICKY, 1)]
    plain = [{"id": 100 + i, "amount": i, "label": f"v{i}"} for i in range(5)]  # one literal
    pipeline = bl.Pipeline(postgres_url, writes=[bl.Insert("items")])
    for batch in (rows, plain):
        assert pipeline.run(batch).status == "success"
    with pg.connect() as conn:
        got = conn.execute(sa.text("SELECT id, amount, label FROM items ORDER BY id")).all()
    expected = [(r["id"], Decimal(r["amount"]), r["label"]) for r in rows + plain]
    assert [tuple(g) for g in got] == expected


def test_upsert_and_increment_keys_with_tricky_text(postgres_url: str, pg: sa.Engine) -> None:
    pipeline = bl.Pipeline(
        postgres_url, writes=[bl.Increment("totals", key="label", columns=["amount"])]
    )
    records = [{"label": text, "amount": 1} for text in TRICKY * 2]
    assert pipeline.run(records).status == "success"
    with pg.connect() as conn:
        got = dict(conn.execute(sa.text("SELECT label, amount FROM totals")).all())
    assert got == {text: 2 for text in TRICKY}


def test_plain_columns_go_as_one_literal_and_others_value_by_value() -> None:
    rows = [(1, "a", Decimal("1.50"), "x y"), (2, "b", Decimal("2"), None)]
    arrays = array_params(rows, ["integer", "text", "numeric", "text"])
    assert arrays == ["{1,2}", "{a,b}", "{1.50,2}", ["x y", None]]
    # no literal where the type is unknown or an array type
    assert array_params([(1,), (2,)], [""]) == [[1, 2]]
    assert array_params([(1,), (2,)], ["INTEGER[]"]) == [[1, 2]]


def test_nulls_among_numbers_go_in_the_literal_and_land_without_isolation(
    postgres_url: str, pg: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A NULL in a number column was written "None" into the array literal: the chunk's first
    # try failed, and isolation then landed every row (correct, but a wasted try per chunk).
    assert array_params([(1,), (None,), (3,)], ["integer"]) == ["{1,NULL,3}"]
    monkeypatch.setattr(PostgresDialect, "copy_from_rows", 10_000)  # the unnest INSERT
    with pg.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE nums (id INTEGER PRIMARY KEY, n BIGINT, d NUMERIC)")
    rows = [
        {"id": i, "n": None if i % 3 else i, "d": None if i % 2 else Decimal(i) / 4}
        for i in range(1, 30)
    ]
    result = bl.Pipeline(postgres_url, writes=[bl.Insert("nums")]).run(rows)
    assert result.status == "success" and result.isolation_flushes == 0
    with pg.connect() as conn:
        got = conn.execute(sa.text("SELECT id, n, d FROM nums ORDER BY id")).all()
    assert [tuple(g) for g in got] == [(r["id"], r["n"], r["d"]) for r in rows]


# -- a dirty insert, staged: every bad row found in one pass ------------------------------------


def _kinds_tables(engine: sa.Engine) -> None:
    """``kid`` rows refer to ``mum``; one ``kid`` (id 1005) is there before the load."""
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS kid, mum, batchline_dead_letters CASCADE"))
    md = sa.MetaData()
    sa.Table("mum", md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False))
    sa.Table(
        "kid",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("mum", sa.Integer, sa.ForeignKey("mum.id", name="fk_kid_mum"), nullable=False),
        sa.Column("label", sa.String(5), nullable=False),
        sa.Column("amount", sa.Numeric(8, 2), nullable=False),
        sa.CheckConstraint("amount >= 0", name="ck_kid_amount"),
    )
    md.create_all(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO mum SELECT generate_series(1, 3)"))
        conn.execute(sa.text("INSERT INTO kid VALUES (1005, 1, 'old', 1)"))


def _kinds_rows(start: int) -> list[dict[str, Any]]:
    """30 records from ``start``: 22 good, and 8 bad ones, each a different way."""
    rows = [
        {"id": i, "mum": 1 + i % 3, "label": f"k{i % 1000}", "amount": Decimal(i) / 4}
        for i in range(start, start + 30)
    ]
    rows[2]["amount"] = -1  # CHECK
    rows[6]["label"] = None  # NOT NULL
    rows[9]["id"] = rows[1]["id"]  # a key earlier in the chunk
    rows[11]["id"] = 1005  # a key already in the table
    rows[14]["mum"] = 99  # FOREIGN KEY (checked at the end of a COPY: no line named)
    rows[17]["label"] = "toolong"  # varchar(5): the value itself (fails the staging COPY)
    rows[20]["amount"] = "many"  # not a number
    rows[26]["id"] = rows[25]["id"]  # the key of the record just before
    return rows


def _letters(result: bl.Result) -> list[tuple[int, str, str, str]]:
    return [(f.position, f.stage, f.error_class, f.error) for f in result.failed_items or []]


def test_a_dirty_insert_finds_every_kind_of_bad_row_in_one_pass(
    postgres_url: str, pg: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Chunk 1: its first try fails, and one isolation try finds all its bad rows (the first
    # by COPY's line, the rest in the one staged pass, the FK violation included, which a
    # COPY cannot place). Chunk 2 follows a dirty chunk: staged from its first try, which
    # lands. The dead letters and tables are those of the old path (a COPY of the rest per
    # bad row, bisecting where COPY names no line); each chunk commits once.
    rows = _kinds_rows(1) + _kinds_rows(31)
    outcomes = []
    for stages in (False, True):
        monkeypatch.setattr(PostgresDialect, "stages_rows", stages)
        _kinds_tables(pg)
        pipeline = bl.Pipeline(postgres_url, writes=[bl.Insert("kid")], chunk_size=30)
        with capture_statements(pipeline) as sent:
            result = pipeline.run(rows)
        with pg.connect() as conn:
            kids = conn.execute(sa.text("SELECT * FROM kid ORDER BY id")).all()
        outcomes.append((_letters(result), kids, result.items_processed))
        if stages:
            assert result.isolation_flushes == 1
            assert result.chunks_committed == 2
            # one staged pass per chunk, each in the one transaction that commits the chunk
            # with its checkpoint
            transactions: list[list[str]] = [[]]
            for sql, _ in sent.statements:
                if sql == "BEGIN":
                    transactions.append([])
                transactions[-1].append(sql)
            staged = [tx for tx in transactions if any("FOR r IN" in sql for sql in tx)]
            assert len(staged) == 2
            for tx in staged:
                assert tx[-1] == "COMMIT" and tx.count("COMMIT") == 1
                assert len([sql for sql in tx if "FOR r IN" in sql]) == 1
                assert len([sql for sql in tx if sql.startswith("UPDATE batchline_jobs")]) == 1
        else:
            assert result.isolation_flushes > 2  # the FK rows were bisected
    (old, old_kids, old_done), (new, new_kids, new_done) = outcomes
    assert new == old
    assert [p for p, *_ in new] == [3, 7, 10, 12, 15, 18, 21, 27, 33, 37, 40, 42, 45, 48, 51, 57]
    classes = {c for _, _, c, _ in new}
    assert classes == {
        "CheckViolation",
        "NotNullViolation",
        "UniqueViolation",
        "ForeignKeyViolation",
        "StringDataRightTruncation",
        "InvalidTextRepresentation",
    }, classes
    assert all(stage == "write" and msg.startswith("insert kid: ") for _, stage, _, msg in new)
    # the good rows landed, once
    assert new_kids == old_kids and new_done == old_done == 60 - 16
    assert len(new_kids) == 1 + 44 and len({k[0] for k in new_kids}) == len(new_kids)


@pytest.mark.parametrize(
    "fault",
    [
        "RAISE EXCEPTION 'not yours' USING ERRCODE = 'insufficient_privilege'",
        "PERFORM NEW.dropped_column",
    ],
    ids=["permission", "dropped-column"],
)
def test_a_fatal_error_inside_the_staged_pass_is_not_dead_lettered(
    postgres_url: str, pg: sa.Engine, fault: str
) -> None:
    # The staged pass keeps only data errors; any other error stops it as it is, and the
    # run stops with nothing dead-lettered and nothing of the chunk landed.
    with pg.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE FUNCTION items_guard() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF NEW.id = 20 THEN {fault}; END IF; RETURN NEW; END $$"
            )
        )
        conn.execute(
            sa.text(
                "CREATE TRIGGER items_guard BEFORE INSERT ON items "
                "FOR EACH ROW EXECUTE FUNCTION items_guard()"
            )
        )
    # chunk 1 (records 1-50): the bad row 7 sends the rest to the staged pass, where the
    # guarded row 20 meets the fault
    rows = _rows(100, bad=7)
    pipeline = bl.Pipeline(postgres_url, writes=[bl.Insert("items")], chunk_size=50)
    with capture_statements(pipeline) as sent, pytest.raises(bl.FatalDatabaseError) as err:
        pipeline.run(rows, job="guarded")
    assert "not the records' fault" in str(err.value)
    assert sent.matching("FOR r IN")  # it was the staged pass that met it
    with pg.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM items")).scalar() == 0
        assert conn.execute(sa.text("SELECT count(*) FROM batchline_dead_letters")).scalar() == 0


def test_the_staged_pass_keeps_exactly_what_classify_calls_data(pg: sa.Engine) -> None:
    # The server-side condition is built from the same tables as classify(); check the two
    # agree on codes of every kind.
    import psycopg

    from batchline._dialects import ErrorKind
    from batchline._dialects._postgres_staged import data_condition

    codes = ["22001", "22P02", "22003", "23502", "23503", "23505", "23514", "54000", "54001"]
    codes += ["42501", "42703", "42P01", "40001", "40P01", "55P03", "57014", "08006", "XX000"]
    codes += ["P0001", "22ZZZ", "23ZZZ"]
    condition = data_condition().replace("SQLSTATE", "code")
    with pg.connect() as conn:
        server = dict(
            conn.exec_driver_sql(
                f"SELECT code, ({condition}) FROM unnest(%(codes)s::text[]) AS t(code)",
                {"codes": codes},
            ).all()
        )
    dialect = PostgresDialect(pg)
    for code in codes:
        exc = psycopg.errors._class_for_state(code)("x")
        exc.sqlstate = code
        assert server[code] is (dialect.classify(exc).kind is ErrorKind.DATA), code


def test_the_staged_pass_takes_any_table_and_column_names(postgres_url: str, pg: sa.Engine) -> None:
    # Names are quoted by the dialect, and may be those of the pass's own variables, the
    # staging table's alias, or hold the pass's dollar quote. (A % in a name is doubled
    # twice on the way, by the clean first try already: another matter than this test's.)
    odd = ["low", "high", "last", "r", "s", "a b", 'q"uote', "$batchline$"]
    md = sa.MetaData()
    sa.Table(
        'odd "table',
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        *[sa.Column(name, sa.Integer, nullable=False) for name in odd],
        sa.CheckConstraint('"low" >= 0', name="ck_odd_low"),
    )
    md.create_all(pg)
    rows = [{"id": i, **{name: i for name in odd}} for i in range(1, 81)]
    for bad in (5, 9, 50, 51):
        rows[bad - 1]["low"] = -1
    pipeline = bl.Pipeline(postgres_url, writes=[bl.Insert('odd "table')], chunk_size=40)
    with capture_statements(pipeline) as sent:
        result = pipeline.run(rows)
    assert [f.position for f in result.failed_items or []] == [5, 9, 50, 51]
    assert len(sent.matching("FOR r IN")) == 2
    with pg.connect() as conn:
        got = conn.execute(sa.text('SELECT * FROM "odd ""table" ORDER BY id')).all()
    assert [tuple(g) for g in got] == [
        (r["id"], *[r[name] for name in odd]) for r in rows if r["low"] >= 0
    ]


def test_a_transient_error_inside_the_staged_pass_is_retried_not_dead_lettered(
    postgres_url: str, pg: sa.Engine
) -> None:
    # lock_not_available inside the pass: the chunk is retried whole; when that outlasts
    # the retries the run stops failed, nothing dead-lettered, nothing of the chunk landed.
    with pg.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE FUNCTION items_busy() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "IF NEW.id = 20 THEN RAISE EXCEPTION 'busy' USING ERRCODE = 'lock_not_available';"
                " END IF; RETURN NEW; END $$"
            )
        )
        conn.execute(
            sa.text(
                "CREATE TRIGGER items_busy BEFORE INSERT ON items "
                "FOR EACH ROW EXECUTE FUNCTION items_busy()"
            )
        )
    slept: list[float] = []
    pipeline = bl.Pipeline(
        postgres_url,
        writes=[bl.Insert("items")],
        chunk_size=50,
        retry=bl.RetryPolicy(attempts=3, sleep=slept.append),
    )
    with capture_statements(pipeline) as sent:
        result = pipeline.run(_rows(100, bad=7), job="busy")
    assert result.status == "failed" and result.error is not None and "busy" in result.error
    assert result.retries >= 2 and slept
    assert len(sent.matching("FOR r IN")) == 3  # each attempt met it in the staged pass
    with pg.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM items")).scalar() == 0
        assert conn.execute(sa.text("SELECT count(*) FROM batchline_dead_letters")).scalar() == 0


def test_transactions_begin_in_the_pipeline_and_only_bookkeeping_commits_lazily(
    postgres_url: str, pg: sa.Engine
) -> None:
    # psycopg waits a round trip for its own implicit BEGIN in pipeline mode, so sessions run
    # the driver in autocommit and send BEGIN themselves. The job's start and end hold only
    # bookkeeping and commit without waiting for the disk; chunk transactions always wait.
    pipeline = bl.Pipeline(postgres_url, writes=[bl.Insert("items")], chunk_size=10)
    sent: list[str] = []
    pipeline.statement_listeners.append(lambda sql, rows: sent.append(sql))
    records = [{"id": i, "amount": i, "label": "x"} for i in range(1, 31)]
    assert pipeline.run(records).status == "success"
    transactions: list[list[str]] = []
    for sql in sent:
        if sql == "BEGIN":
            transactions.append([])
        elif transactions:
            transactions[-1].append(sql)
    relaxed = [t for t in transactions if "SET LOCAL synchronous_commit TO OFF" in t]
    chunks = [
        t for t in transactions if any(s.startswith("INSERT INTO") and "items" in s for s in t)
    ]
    assert len(chunks) == 3 and len(relaxed) == 2  # the job's start and its end
    assert not any("SET LOCAL synchronous_commit TO OFF" in t for t in chunks)
    assert all(t[-1] == "COMMIT" for t in chunks)
    raw = pipeline.engine.raw_connection()  # the run's pooled connection, settings back
    try:
        assert raw.driver_connection.autocommit is False
    finally:
        raw.close()
        pipeline.close()


def test_an_ascii_text_column_needs_quotes_exactly_where_the_pattern_says() -> None:
    # the search per character (ASCII) and the regex (anything else) agree on every
    # character of the Basic Multilingual Plane's first 12,544, alone and among others
    from batchline._dialects._postgres_arrays import _QUOTED, _needs_quotes

    for cp in range(0x3100):
        text = f"ab{chr(cp)}cd"
        assert _needs_quotes(text) == (_QUOTED.search(text) is not None), hex(cp)
        assert _needs_quotes(chr(cp)) == (_QUOTED.search(chr(cp)) is not None), hex(cp)
