"""The encodings written into the state tables: a ledger key's hash never changes between
releases (a job resumed by a newer batchline must recognise what an older one recorded),
and payload JSON keeps what JSON cannot hold as text."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest

from batchline._state_rows import key_hash, to_json
from tests._schemas import execute, rows


@pytest.mark.parametrize(
    ("key", "digest"),
    [
        (("INV-1", 3), "dd0989c5201f60eaff6b5274d43918aec2ba06b84d0f2bf22e8ad480f7cdc8ef"),
        ("msg-123", "96a0919c1683f5b3f08371c0cb5919cca6174a1bffadd5b88cdc55959842ca03"),
        (42, "73475cb40a568e8da8a045ced110137e159f890ac4da883b6b17dc651b3a8049"),
        (Decimal("1.10"), "2bba8bd227c5f31309369957d115a72950933ae5bc468ba714b2d807fcfd26fc"),
        (("é", None), "4b813d3f87f8a2aeea37ff977351dd7942126076e0a9cd81630b7acf1e9b168b"),
    ],
)
def test_a_ledger_key_hashes_as_every_release_before_hashed_it(key: Any, digest: str) -> None:
    assert key_hash(key) == digest


@pytest.mark.parametrize(
    "key",
    [
        ("amqp", "m-1"),
        ('a"b\\c', 5, -7, 0),
        ("é\u2028\x00\n\t", 10**30, -(2**63)),
        (),
        ("x",),
        (1, True),  # a bool is not an int here: true, not 1
        (1, 2.5),
        ("s", None),
        ("a", ("b", 1)),
        (Decimal("1.0"), "d"),
        ("amqp", "a\ud800"),  # a lone surrogate: written escaped, as to_json writes it
        ("a\ud800", "m-1"),  # in the first part too
        ("amqp", 7),
        ("é", "ü\u2028\x00"),
        ("t", True),
        ("t", 10**30),
        ("t", ["x"]),
    ],
)
def test_a_tuple_key_hashes_as_its_json_does(key: Any) -> None:
    """Tuples of strings and integers take a shorter way to the same text: the hash is the
    hash of ``to_json(key)``, whatever the tuple holds."""
    assert key_hash(key) == hashlib.sha256(to_json(key).encode()).hexdigest()
    assert key_hash(key) == hashlib.sha256(to_json(key).encode()).hexdigest()  # kept state


def test_two_part_keys_hash_as_their_json_past_the_kept_tags() -> None:
    """The hash state kept for a two-part key's first string is copied, never changed, and
    tags past the ones kept hash the same way."""
    keys = [(f"tag-{i % 300}", f"m-{i}") for i in range(900)]
    for key in keys:
        assert key_hash(key) == hashlib.sha256(to_json(key).encode()).hexdigest()


def test_payload_json_keeps_what_json_cannot_hold_as_text() -> None:
    circular: list[Any] = []
    circular.append(circular)
    value = {
        "when": datetime(2024, 1, 1, 12, 0, 0, 500000, tzinfo=timezone.utc),
        "amount": Decimal("1.10"),
        "raw": b"\x00\x01",
        "tags": ("a", "b"),
        "text": 'ü\n"x',
        "nan": float("nan"),
    }
    assert to_json(value) == (
        '{"when": "2024-01-01T12:00:00.500000+00:00", "amount": "1.10", "raw": "0001", '
        '"tags": ["a", "b"], "text": "ü\\n\\"x", "nan": NaN}'
    )
    assert to_json(circular) == '"[[...]]"'  # not JSON-able at all: its text, never lost


def test_a_lone_surrogate_is_written_escaped() -> None:
    # no UTF-8 form, so no database takes it as it is; escaped, it reads back the same
    text = to_json({"name": "a\ud800", "ok": "é"})
    assert text.isascii() and json.loads(text) == {"name": "a\ud800", "ok": "é"}
    assert to_json({"ok": "é"}) == '{"ok": "é"}'  # (other text is not escaped)


def test_a_dict_with_a_lone_surrogate_is_dead_lettered_not_the_run(db_url: str) -> None:
    # a Python dict can hold what no UTF-8 file can: the insert refuses it (stage write),
    # and its dead letter, which holds it, is written escaped (the run crashed at commit);
    # through bl.load the load's map refuses it first (stage map), naming the column
    import batchline as bl

    records = [{"id": 1, "name": "a"}, {"id": 2, "name": "x\udc80"}, {"id": 3, "name": "c"}]
    execute(db_url, "CREATE TABLE s (id BIGINT PRIMARY KEY, name TEXT)")
    result = bl.Pipeline(db_url, writes=[bl.Insert("s")]).run(records, job="s")
    assert [(f.line, f.stage) for f in result.failed_items_list] == [(2, "write")]
    loaded = bl.load(records, db_url, table="l", job="l")
    (failure,) = loaded.failed_items_list
    assert (failure.line, failure.stage) == (2, "map")
    assert "column 'name': a lone surrogate '\\udc80'" in failure.error
    assert rows(db_url, "SELECT id FROM s ORDER BY id") == rows(
        db_url, "SELECT id FROM l ORDER BY id"
    ) == [(1,), (3,)]  # fmt: skip
