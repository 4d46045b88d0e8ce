"""What a source yields: a record read (:class:`SourceRecord`) or one that could not be
(:class:`ReadFailure`), numbered by position and line; and the helpers readers share."""

from __future__ import annotations

import codecs
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any

__all__ = ["RAW_LIMIT", "ReadFailure", "SourceItem", "SourceRecord", "iter_records"]

RAW_LIMIT = 64 * 1024  # raw text kept on a failure


@dataclass(slots=True)
class SourceRecord:
    """One record read from a source.

    Attributes:
        position: 1-based ordinal among data records (header excluded); checkpoints count these.
        line: 1-based physical line where the record starts (equals ``position`` where lines
            mean nothing: iterables, JSON arrays, Parquet).
        data: the record's fields.
    """

    position: int
    line: int
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ReadFailure:
    """A record that could not be read; it becomes a dead letter, the stream goes on.

    Attributes:
        position: as for :class:`SourceRecord`.
        line: as for :class:`SourceRecord`.
        error: why the record could not be read.
        raw: the record's raw text (undecodable bytes replaced), at most 64 KiB, when known.
    """

    position: int
    line: int
    error: str
    raw: str | None


SourceItem = SourceRecord | ReadFailure


def iter_records(records: Iterable[Mapping[str, Any]]) -> Iterator[SourceItem]:
    """Number the records of a plain iterable, so they carry positions like file records."""
    for position, item in enumerate(records, start=1):
        if type(item) is dict or isinstance(item, Mapping):  # the exact check is the cheap one
            yield SourceRecord(position, position, dict(item))
        else:
            yield ReadFailure(
                position, position, f"record is {type(item).__name__}, expected a mapping", None
            )


def is_utf8(encoding: str) -> bool:
    return codecs.lookup(encoding).name in ("utf-8", "utf-8-sig")


def encoding_label(encoding: str) -> str:
    name = codecs.lookup(encoding).name
    return "UTF-8" if name in ("utf-8", "utf-8-sig") else name


def decode_message(encoding: str, exc: UnicodeDecodeError, base: int) -> str:
    byte = exc.object[exc.start]
    return f"invalid {encoding_label(encoding)} (byte 0x{byte:02x} at offset {base + exc.start})"


def json_kind(value: object) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"


class _CountingReader:
    """Counts the bytes pulled from a binary stream, for progress without seeking."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self.count += len(data)
        return data

    def readline(self, size: int = -1) -> bytes:
        data = self._stream.readline(size)
        self.count += len(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._stream.seek(offset, whence)
