"""``decode_json``: a message body means the same with orjson as with json."""

from __future__ import annotations

import math

import pytest

from batchline._streams import _source
from batchline._streams._source import decode_json


@pytest.mark.parametrize("fast", [True, False], ids=["orjson", "json"])
def test_bodies_decode_the_same_with_or_without_orjson(
    fast: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not fast:
        monkeypatch.setattr(_source, "_fast_loads", None)
    assert decode_json("1", b'{"a": 1, "b": "\\u00e9"}') == ({"a": 1, "b": "é"}, None)
    big = decode_json("2", b'{"n": 123456789012345678901234567890}')  # over 64 bits
    assert big == ({"n": 123456789012345678901234567890}, None)
    for n in (2**63 - 1, 2**63, -(2**63) - 1, 2**64, 10**18, -(10**18)):  # 19-20 digits
        body = b'{"n": %d, "s": "x"}' % n
        assert decode_json("2", body) == ({"n": n, "s": "x"}, None)
    nan, error = decode_json("3", '{"x": NaN}')
    assert nan is not None and error is None and math.isnan(nan["x"])
    assert decode_json("4", b"[1]") == (None, "message 4: JSON list, expected an object")
    assert decode_json("5", b"") == (
        None,
        "message 5: invalid JSON: Expecting value: line 1 column 1 (char 0)",
    )
    record, error = decode_json("6", b'{"a": "\xff"}')
    assert record is None and error is not None and error.startswith("message 6: invalid JSON")
    assert decode_json("7", None) == (None, "message 7: no body")
