"""A CSV (or JSON Lines) file's bytes cut into blocks of whole lines, and a block's lines
counted: the first step of the block readers (``_csv_blocks``, ``_jsonl_blocks``), before any
parser sees the bytes.
"""

from __future__ import annotations

import codecs
import gzip
from typing import IO

__all__ = ["Stream", "plain_lines"]


class Stream:
    """Blocks of whole lines from a binary stream, and single lines after a block (for a
    quoted field that runs past it)."""

    def __init__(self, stream: IO[bytes] | gzip.GzipFile, size: int) -> None:
        self._stream = stream
        self._size = size
        self._rest = b""

    def block(self) -> bytes:
        """The next block of whole lines (the last may lack its newline); b"" at the end."""
        rest = self._rest
        while True:
            data = self._stream.read(self._size)
            if not data:
                self._rest = b""
                return rest
            buf = rest + data if rest else data
            cut = buf.rfind(b"\n")
            if cut >= 0:
                self._rest = buf[cut + 1 :]
                return buf[: cut + 1]
            rest = buf  # a line longer than a block: read on

    def drop_bom(self) -> None:
        """Drop a UTF-8 BOM at the start of the stream, as the row reader does."""
        head = self._stream.read(len(codecs.BOM_UTF8))
        self._rest = b"" if head == codecs.BOM_UTF8 else head

    def readline(self) -> bytes:
        rest = self._rest
        cut = rest.find(b"\n")
        if cut >= 0:
            self._rest = rest[cut + 1 :]
            return rest[: cut + 1]
        self._rest = b""
        return rest + self._stream.readline()


def plain_lines(block: bytes) -> int | None:
    """How many lines ``block`` holds, or None when one is blank (``\\n\\n``, ``\\n\\r\\n``, a
    block that starts with one) or it holds a NUL or a carriage return not before a newline.

    With numpy over the bytes, not ``bytes`` searches: the two-byte searches for blank lines
    cost 8 ms a 4 MiB block (more than pyarrow's parse of it, with the GIL held), and these
    masks under 2."""
    import numpy as np

    if b"\x00" in block:
        return None
    data = np.frombuffer(block, np.uint8)
    newlines = np.flatnonzero(data == 10)
    if len(newlines) and (newlines[0] == 0 or bool((np.diff(newlines) == 1).any())):
        return None
    if b"\r" in block:
        returns = np.flatnonzero(data == 13)
        if returns[0] == 0 or returns[-1] == len(block) - 1:
            return None  # a block that starts with \r\n, or a \r with nothing after it
        if bool((data[returns + 1] != 10).any()) or bool((data[returns - 1] == 10).any()):
            return None  # a lone \r, or a blank \r\n line
    return len(newlines) + (0 if block.endswith(b"\n") else 1)
