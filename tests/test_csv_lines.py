"""``_csv_lines``: a block's lines counted, and the blocks with a blank line, a NUL or a lone
carriage return told apart, exactly as the ``bytes`` searches it replaces told them."""

from __future__ import annotations

import random

import pytest

from batchline._csv_lines import plain_lines


def _by_searches(block: bytes) -> int | None:
    """The checks ``_csv_blocks`` made before, with ``bytes`` searches."""
    if (
        b"\x00" in block
        or b"\n\n" in block
        or b"\n\r\n" in block
        or block.startswith((b"\n", b"\r\n"))
        or (b"\r" in block and block.count(b"\r") != block.count(b"\r\n"))
    ):
        return None
    return block.count(b"\n") + (0 if block.endswith(b"\n") else 1)


@pytest.mark.parametrize("seed", range(20))
def test_random_blocks_are_counted_and_refused_as_the_searches_did(seed: int) -> None:
    rnd = random.Random(seed)
    pieces = [b"a", b",", b"1", b"\n", b"\r\n", b"\r", b"\x00", b'"', b"xy,z\n", b"\n\n"]
    weights = [20, 10, 10, 8, 4, 1, 0.2, 1, 10, 0.3]
    for _ in range(300):
        block = b"".join(rnd.choices(pieces, weights, k=rnd.randint(0, 40)))
        assert plain_lines(block) == _by_searches(block), block


@pytest.mark.parametrize(
    ("block", "lines"),
    [
        (b"", 1),
        (b"a,b\n1,2\n", 2),
        (b"a,b\r\n1,2", 2),
        (b"\na", None),
        (b"\r\na", None),
        (b"a\n\nb", None),
        (b"a\n\r\nb", None),
        (b"a\rb\n", None),
        (b"a\r", None),
        (b"a\x00\n", None),
    ],
)
def test_each_refusal(block: bytes, lines: int | None) -> None:
    assert plain_lines(block) == lines == _by_searches(block)
