"""A top-level JSON array streamed element by element, holding about one element in memory."""

from __future__ import annotations

import codecs
import json
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from ._errors import SourceError
from ._source_items import (
    RAW_LIMIT,
    ReadFailure,
    SourceItem,
    SourceRecord,
    encoding_label,
    json_kind,
)

if TYPE_CHECKING:
    from ._sources import FileSource

__all__ = ["json_array_items"]

_BLOCK = 64 * 1024  # read size
_MAX_JSON_ELEMENT = 64 * 1024 * 1024  # one array element larger than this is refused


def json_array_items(source: FileSource, read: Callable[[int], bytes]) -> Iterator[SourceItem]:
    """Stream the elements of a top-level array, holding about one element in memory.

    A syntax error cannot be skipped (there is no way to find the next element), so it
    ends the stream with a last ``ReadFailure``.
    """
    decoder = json.JSONDecoder()
    text_decoder = codecs.getincrementaldecoder(source.encoding)()
    buf = ""
    pos = 0
    eof = False
    byte_count = 0
    bad_offset = 0
    broken: UnicodeDecodeError | None = None

    def more(size: int = _BLOCK) -> bool:
        """Append the next block to ``buf``; False at the end of the file."""
        nonlocal buf, pos, eof, byte_count, bad_offset, broken
        if eof:
            return False
        if pos > _BLOCK:  # drop what is parsed, so the buffer stays one element wide
            buf = buf[pos:]
            pos = 0
        if broken is not None:
            raise broken
        data = read(size)
        carried = len(text_decoder.getstate()[0])
        try:
            if not data:
                eof = True
                buf += text_decoder.decode(b"", final=True)
                return False
            buf += text_decoder.decode(data)
            return True
        except UnicodeDecodeError as exc:
            # Keep the good text before the bad byte; fail once the parser needs more.
            bad_offset = byte_count - carried + exc.start
            buf += exc.object[: exc.start].decode(source.encoding)
            broken = exc
            return True
        finally:
            byte_count += len(data)

    def skip_ws() -> None:
        nonlocal pos
        while True:
            while pos < len(buf) and buf[pos] in " \t\r\n":
                pos += 1
            if pos < len(buf) or not more():
                return

    position = 0
    in_element = False
    try:
        skip_ws()
        if pos < len(buf) and buf[pos] == "\ufeff":
            pos += 1
            skip_ws()
        if pos >= len(buf):
            raise SourceError(f"{source.path} is empty, expected a JSON array")
        if buf[pos] != "[":
            raise SourceError(
                f"{source.path} does not hold a JSON array (it starts with {buf[pos]!r}); "
                "use the jsonl format for one object per line"
            )
        pos += 1
        skip_ws()
        if pos < len(buf) and buf[pos] == "]":
            pos += 1
        else:
            while True:
                position += 1
                in_element = True
                skip_ws()
                size = _BLOCK
                while True:
                    try:
                        value, end = decoder.raw_decode(buf, pos)
                    except json.JSONDecodeError as exc:
                        if eof or not _maybe_truncated(exc, len(buf)):
                            yield ReadFailure(
                                position,
                                position,
                                f"invalid JSON: {exc.msg} at {_where(buf, exc.pos, pos)}",
                                buf[pos : pos + RAW_LIMIT],
                            )
                            return
                    else:
                        if end < len(buf) or eof:
                            break
                    if len(buf) - pos > _MAX_JSON_ELEMENT:
                        yield ReadFailure(
                            position,
                            position,
                            f"array element is larger than {_MAX_JSON_ELEMENT} characters",
                            buf[pos : pos + RAW_LIMIT],
                        )
                        return
                    more(size)
                    size = min(size * 2, 16 * _BLOCK)  # fewer re-parses of a large element
                if isinstance(value, dict):
                    yield SourceRecord(position, position, value)
                else:
                    yield ReadFailure(
                        position,
                        position,
                        f"array element is a JSON {json_kind(value)}, expected an object",
                        buf[pos:end][:RAW_LIMIT],
                    )
                pos = end
                in_element = False
                skip_ws()
                if pos < len(buf) and buf[pos] == ",":
                    pos += 1
                    continue
                if pos < len(buf) and buf[pos] == "]":
                    pos += 1
                    break
                found = repr(buf[pos]) if pos < len(buf) else "end of file"
                yield ReadFailure(
                    position + 1,
                    position + 1,
                    f"invalid JSON: expected ',' or ']' after array element {position}, "
                    f"found {found}",
                    buf[pos : pos + RAW_LIMIT] or None,
                )
                return
        skip_ws()
        if pos < len(buf):
            yield ReadFailure(
                position + 1,
                position + 1,
                "invalid JSON: unexpected data after the closing ']' of the array",
                buf[pos : pos + RAW_LIMIT],
            )
    except UnicodeDecodeError as exc:
        # The decoder cannot find the next element past bad bytes, so the stream ends here.
        position = max(position, 1) if in_element else position + 1
        yield ReadFailure(
            position,
            position,
            f"invalid {encoding_label(source.encoding)} "
            f"(byte 0x{exc.object[exc.start]:02x} at offset {bad_offset} of the file); "
            "cannot read further",
            None,
        )


def _maybe_truncated(exc: json.JSONDecodeError, length: int) -> bool:
    """Whether a decode error may only mean the buffer ends mid-element."""
    return exc.msg.startswith("Unterminated string") or length - exc.pos < 16


def _where(buf: str, pos: int, start: int) -> str:
    """Say where an error sits inside the element that starts at ``start``."""
    line = buf.count("\n", start, pos) + 1
    column = pos - max(buf.rfind("\n", start, pos) + 1, start) + 1
    return f"line {line} column {column} of the element"
