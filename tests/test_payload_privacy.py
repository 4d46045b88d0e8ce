"""What dead letters and the log keep of a record: ``dead_letter_payload``, ``redact``, logging.

A dead-letter row holds what its payload mode promises and nothing more: no redacted value,
and with ``keys`` or ``none`` no other value either, in the payload or in the message (which
the database or the map function may have filled with values). Replay loads only the letters
that hold their record as read and says why it left the others. With logging unconfigured
batchline prints nothing; counts are logged at INFO, values only at DEBUG.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

import batchline as bl
from batchline.cli import cli


def _table(url: str) -> None:
    md = sa.MetaData()
    sa.Table(
        "signups",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("email", sa.String(100), nullable=False, unique=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("qty", sa.Integer, nullable=False),
    )
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    md.create_all(engine)
    engine.dispose()


def map_signup(r: dict[str, Any], out: bl.Out) -> None:
    if not str(r["qty"]).isdigit():  # the message echoes values, as real code's often do
        raise ValueError(f"quantity {r['qty']!r} of {r['email']} is not a number")
    out.write("signups", {k: r[k] for k in ("id", "email", "name")} | {"qty": int(r["qty"])})


def map_signup_fixed(r: dict[str, Any], out: bl.Out) -> None:
    qty = int(r["qty"]) if str(r["qty"]).isdigit() else 1
    out.write("signups", {k: r[k] for k in ("id", "email", "name")} | {"qty": qty})


def _record(i: int, **changes: Any) -> dict[str, Any]:
    rec = {
        "id": i,
        "email": f"person{i}@example.com",
        "name": f"Person Number{i}",
        "qty": str(i),
        "meta": {"email": f"alt{i}@example.net", "source": "web"},
    }
    rec.update(changes)
    return rec


def _records() -> list[dict[str, Any]]:
    """Ten signups: 4 takes 2's email (the database refuses it), 7's quantity does not map."""
    rows = [_record(i) for i in range(1, 11)]
    rows[3]["email"] = "person2@example.com"
    rows[6]["qty"] = "seven-ish"
    return rows


def _values(records: list[dict[str, Any]], *fields: str) -> set[str]:
    found = set()
    for r in records:
        for f in fields:
            if f == "meta.email":
                found.add(r["meta"]["email"])
            else:
                found.add(str(r[f]))
    return found


def _letter_rows(url: str) -> list[str]:
    """Each dead-letter row as one text: every column, as the table holds it."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT * FROM batchline_dead_letters ORDER BY position"))
        texts = [" | ".join(str(v) for v in row) for row in rows]
    engine.dispose()
    return texts


def _load(url: str, **options: Any) -> tuple[bl.Result, list[bl.DeadLetter]]:
    _table(url)
    with bl.Pipeline(url, writes=[bl.Insert("signups")], chunk_size=4, **options) as pipeline:
        result = pipeline.run(_records(), map_signup, job="signups")
    assert (result.items_processed, result.items_failed) == (8, 2), result.failed_items
    with bl.DeadLetters(url) as letters:
        return result, letters.list("signups")


# -- what a letter stores -------------------------------------------------------------------------


def test_redacted_fields_appear_nowhere_in_the_dead_letter_row(db_url: str) -> None:
    result, found = _load(db_url, redact=["email"])

    secret = _values(_records(), "email", "meta.email")
    for row in _letter_rows(db_url):
        assert not [s for s in secret if s in row], row
    for item in result.failed_items or ():
        assert not [s for s in secret if s in item.error], item
    by_pos = {d.position: d for d in found}
    assert set(by_pos) == {4, 7}
    assert by_pos[7].message == "ValueError: quantity 'seven-ish' of [redacted] is not a number"
    assert by_pos[7].record == _record(
        7, qty="seven-ish", email="[redacted]", meta={"email": "[redacted]", "source": "web"}
    )
    assert (by_pos[7].payload_mode, by_pos[7].redacted, by_pos[7].replayable) == (
        "full",
        ("email",),
        False,
    )
    assert by_pos[4].stage == "write" and by_pos[4].record["name"] == "Person Number4"
    if db_url.startswith("mysql"):  # the database echoes the value: scrubbed there too
        assert "Duplicate entry '[redacted]'" in by_pos[4].message


def test_keys_payload_keeps_only_the_declared_key_fields(db_url: str) -> None:
    _table(db_url)
    pipeline = bl.Pipeline(
        db_url, writes=[bl.Upsert("signups", key="id")], dead_letter_payload="keys"
    )
    records = _records()
    records[3].update(email="person4@example.com", name=None)  # NOT NULL: refused
    result = pipeline.run(records, map_signup, job="signups")
    assert result.items_failed == 2

    with bl.DeadLetters(db_url) as letters:
        found = letters.list("signups")
    assert [(d.position, d.record, d.payload_mode) for d in found] == [
        (4, {"id": 4}, "keys"),
        (7, {"id": 7}, "keys"),
    ]
    assert found[1].message == "ValueError: quantity '[redacted]' of [redacted] is not a number"
    withheld = _values(_records(), "email", "name", "meta.email") | {"seven-ish"}
    for row in _letter_rows(db_url):
        assert not [s for s in withheld if s in row], row


def test_keys_payload_takes_dead_letter_keys_and_redacts_them_too(db_url: str) -> None:
    _, found = _load(
        db_url, dead_letter_payload="keys", dead_letter_keys=["id", "name"], redact=["name"]
    )
    assert [d.record for d in found] == [
        {"id": 4, "name": "[redacted]"},
        {"id": 7, "name": "[redacted]"},
    ]
    assert found[0].redacted == ("name",)
    for row in _letter_rows(db_url):
        assert "Person Number" not in row and "@example" not in row


def test_none_payload_keeps_no_value_of_the_record(db_url: str) -> None:
    _, found = _load(db_url, dead_letter_payload="none")

    assert [(d.position, d.record, d.payload_mode) for d in found] == [
        (4, None, "none"),
        (7, None, "none"),
    ]
    withheld = _values(_records(), "email", "name", "meta.email") | {"seven-ish"}
    for row in _letter_rows(db_url):
        assert not [s for s in withheld if s in row], row
    assert found[1].stage == "map" and "is not a number" in found[1].message


def test_read_failures_keep_no_raw_text_when_fields_are_redacted(
    tmp_path: Path, sqlite_url: str
) -> None:
    _table(sqlite_url)
    path = tmp_path / "s.jsonl"
    path.write_text(
        json.dumps(_record(1)) + '\n{"id": 2, "email": "cut@example.com", \n', encoding="utf-8"
    )
    pipeline = bl.Pipeline(sqlite_url, writes=[bl.Insert("signups")], redact=["email"])
    result = pipeline.run(bl.read(path), map_signup, job="raw")

    assert (result.items_processed, result.items_failed) == (1, 1)
    [letter] = bl.DeadLetters(sqlite_url).list("raw")
    assert (letter.stage, letter.payload_mode, letter.record) == ("read", "none", None)
    assert "cut@example.com" not in _letter_rows(sqlite_url)[0]


def test_a_full_record_that_looks_like_an_envelope_reads_back_as_it_was(sqlite_url: str) -> None:
    _table(sqlite_url)
    odd = _record(1, qty="x", __batchline_payload__="keys")
    bl.Pipeline(sqlite_url, writes=[bl.Insert("signups")]).run([odd], map_signup, job="odd")
    [letter] = bl.DeadLetters(sqlite_url).list("odd")
    assert (letter.record, letter.payload_mode, letter.replayable) == (odd, "full", True)


def test_bad_payload_settings_are_config_errors(sqlite_url: str) -> None:
    insert = [bl.Insert("signups")]
    with pytest.raises(bl.ConfigError, match="dead_letter_payload must be one of"):
        bl.Pipeline(sqlite_url, writes=insert, dead_letter_payload="some")
    with pytest.raises(bl.ConfigError, match="dead_letter_keys="):
        bl.Pipeline(sqlite_url, writes=insert, dead_letter_payload="keys")
    with pytest.raises(bl.ConfigError, match="only applies with dead_letter_payload='keys'"):
        bl.Pipeline(sqlite_url, writes=insert, dead_letter_keys=["id"])
    with pytest.raises(bl.ConfigError, match="redact"):
        bl.Pipeline(sqlite_url, writes=insert, redact=[""])


# -- replay ---------------------------------------------------------------------------------------


def test_replay_refuses_letters_without_their_record_and_replays_the_full_ones(
    db_url: str,
) -> None:
    _table(db_url)
    rows = _records()
    for i in (6, 8, 9):
        rows[i]["qty"] = "lots"  # records 7, 9 and 10 fail at map
    runs = [
        ("whole", {}, rows[:7]),
        ("keyed", {"dead_letter_payload": "keys", "dead_letter_keys": ["id"]}, rows[7:9]),
        ("blank", {"redact": ["email"]}, rows[9:]),
    ]
    for job, options, part in runs:
        pipeline = bl.Pipeline(db_url, writes=[bl.Insert("signups")], **options)
        pipeline.run(part, map_signup, job=job)
    letters = bl.DeadLetters(db_url)
    before = letters.list()
    assert [(d.job, d.position) for d in before] == [
        ("whole", 4),
        ("whole", 7),
        ("keyed", 2),
        ("blank", 1),
    ]

    pipeline = bl.Pipeline(db_url, writes=[bl.Insert("signups")])
    result = letters.replay(pipeline, map_signup_fixed)

    assert result.items_processed == 1  # record 7; record 4 still collides
    left = letters.list()
    assert [(d.id, d.attempts) for d in left] == [
        (before[0].id, 2),
        (before[2].id, 1),
        (before[3].id, 1),
    ]
    assert [d.payload for d in left[1:]] == [d.payload for d in before[2:]]
    message = result.message or ""
    assert message.startswith("2 dead letters not replayed: ")
    assert (
        f"letter {before[2].id} holds only keys (dead_letter_payload='keys'); it cannot be "
        "replayed: the record as read was not kept, so load line 2 of its source again"
    ) in message
    assert f"letter {before[3].id} has email redacted (redact=['email'])" in message
    letters.close()


def test_replayed_letter_failing_again_gets_a_scrubbed_reason_and_keeps_its_payload(
    db_url: str,
) -> None:
    _table(db_url)
    bl.Pipeline(db_url, writes=[bl.Insert("signups")]).run(
        [_record(1, qty="x")], map_signup, job="j"
    )
    letters = bl.DeadLetters(db_url)
    [before] = letters.list("j")
    assert "person1@example.com" in before.message

    strict = bl.Pipeline(db_url, writes=[bl.Insert("signups")], redact=["email"])
    assert letters.replay(strict, map_signup, job="j").items_failed == 1

    [after] = letters.list("j")
    assert (after.id, after.attempts, after.payload) == (before.id, 2, before.payload)
    assert after.message == "ValueError: quantity 'x' of [redacted] is not a number"
    letters.close()


# -- the command line -----------------------------------------------------------------------------


def _cli(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _csv(path: Path) -> Path:
    path.write_text(
        "id,email,qty\n1,ann@example.com,1\n2,bob@example.com,lots-of\n3,ann@example.com,3\n",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def signups(sqlite_url: str) -> str:
    engine = sa.create_engine(sqlite_url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE s (id INTEGER, email TEXT UNIQUE, qty INTEGER)")
    engine.dispose()
    return sqlite_url


def test_cli_redact_keeps_values_out_of_letters_summary_and_replay(
    tmp_path: Path, signups: str
) -> None:
    path = _csv(tmp_path / "s.csv")
    loaded = _cli(
        "load", str(path), "--db", signups, "--table", "s", "--job", "j",
        "--redact", "email", "--redact", "qty",
    )  # fmt: skip
    assert loaded.exit_code == 3, loaded.output
    assert "lots-of" not in loaded.output and "ann@example" not in loaded.output
    for row in _letter_rows(signups):
        assert "lots-of" not in row and "@example.com" not in row, row

    listed = json.loads(_cli("dlq", "list", "--db", signups, "--json").stdout)
    assert [(d["line"], d["payload_mode"], d["redacted"]) for d in listed] == [
        (3, "full", ["email", "qty"]),
        (4, "full", ["email", "qty"]),
    ]
    assert listed[0]["record"] == {"id": "2", "email": "[redacted]", "qty": "[redacted]"}
    shown = _cli("dlq", "show", str(listed[0]["id"]), "--db", signups)
    assert "record (email, qty redacted):" in shown.stdout

    replayed = _cli("dlq", "replay", "--db", signups, "--job", "j", "--quiet")
    assert replayed.exit_code == 0
    assert "2 dead letters not replayed" in replayed.stderr
    assert f"letter {listed[0]['id']} has email, qty redacted" in replayed.stderr
    assert len(_letter_rows(signups)) == 2


@pytest.mark.parametrize(
    ("options", "record", "shown"),
    [
        (("--dead-letter-payload", "keys", "--dead-letter-keys", "id"), {"id": "2"}, "key fields"),
        (("--dead-letter-payload", "keys", "--idempotency-key", "id"), {"id": "2"}, "key fields"),
        (("--dead-letter-payload", "none"), None, "not stored"),
    ],
)
def test_cli_dead_letter_payload_limits_what_letters_keep(
    tmp_path: Path, signups: str, options: tuple[str, ...], record: Any, shown: str
) -> None:
    path = _csv(tmp_path / "s.csv")
    loaded = _cli("load", str(path), "--db", signups, "--table", "s", "--job", "j", *options)
    assert loaded.exit_code == 3, loaded.output

    listed = json.loads(_cli("dlq", "list", "--db", signups, "--json").stdout)
    assert listed[0]["record"] == record and listed[0]["stage"] == "map"
    for row in _letter_rows(signups):
        assert "lots-of" not in row and "bob@example.com" not in row, row
    assert shown in _cli("dlq", "show", str(listed[0]["id"]), "--db", signups).stdout
    replayed = _cli("dlq", "replay", "--db", signups, "--job", "j")
    assert "it cannot be replayed" in " ".join(replayed.stdout.split())


def test_cli_keys_without_key_columns_is_a_usage_error(tmp_path: Path, signups: str) -> None:
    path = _csv(tmp_path / "s.csv")
    refused = _cli(
        "load", str(path), "--db", signups, "--table", "s", "--dead-letter-payload", "keys"
    )
    assert refused.exit_code == 2
    assert "--dead-letter-keys, --key or --idempotency-key" in refused.stderr


# -- logging --------------------------------------------------------------------------------------

_SCRIPT = """
import logging, sys
import batchline as bl
import sqlalchemy as sa

url = sys.argv[1]
if sys.argv[2] != "unconfigured":
    logging.basicConfig(level=getattr(logging, sys.argv[2]), format="%(levelname)s %(message)s")
engine = sa.create_engine(url)
with engine.begin() as conn:
    conn.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
engine.dispose()

def map_row(r, out):
    out.insert("t", {"id": r["id"], "n": int(r["n"])})

rows = [{"id": i, "n": str(i), "note": "zebra-secret-%d" % i} for i in range(1, 21)]
rows[4]["n"] = "not-a-number-5"
rows[11]["id"] = 11  # the database refuses it
bl.Pipeline(url, writes=[bl.Insert("t")], chunk_size=10).run(rows, map_row, job="j")
"""


def _run_logged(tmp_path: Path, level: str) -> str:
    script = tmp_path / "load.py"
    script.write_text(_SCRIPT, encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'log.db'}"
    done = subprocess.run(
        [sys.executable, str(script), url, level], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_with_logging_unconfigured_nothing_reaches_stderr(tmp_path: Path) -> None:
    assert _run_logged(tmp_path, "unconfigured") == ""


def test_info_logs_counts_per_chunk_and_no_values(tmp_path: Path) -> None:
    stderr = _run_logged(tmp_path, "INFO")
    assert "INFO job j: committed records up to 10: 9 loaded, 0 duplicates, 1 dead-lettered" in (
        stderr
    )
    assert "up to 20: 9 loaded, 0 duplicates, 1 dead-lettered" in stderr
    assert "zebra-secret" not in stderr and "not-a-number" not in stderr
    assert "WARNING" not in stderr


def test_debug_logs_each_dead_letter_with_its_values(tmp_path: Path) -> None:
    stderr = _run_logged(tmp_path, "DEBUG")
    lines = [line for line in stderr.splitlines() if "dead-lettered at stage" in line]
    assert len(lines) == 2 and all(line.startswith("DEBUG ") for line in lines)
    assert "record 5 (line 5)" in lines[0] and "not-a-number-5" in lines[0]
    assert "zebra-secret-5" in lines[0] and "zebra-secret-12" in lines[1]
