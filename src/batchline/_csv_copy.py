r"""A clean CSV block copied into PostgreSQL as the file's own text.

Why: on the CSV bulk path each block is read into text columns, converted to the load's
column kinds (``_csv_convert``), and was then written back to CSV text by Arrow's writer for
``COPY``: writing the text again took as long as converting it. When every value of a
block passed its kind's check unchanged (no misfit, no unreadable line, nothing Python had
to convert), the text PostgreSQL would parse is the file's own: each value matched the
pattern of texts that Arrow and the row path both read as one value (``_csv_convert``),
which is also the value PostgreSQL's input function reads from that text. So the block's
bytes go to ``COPY … (FORMAT csv)`` as they are, with the file's delimiter and quote, and
the empty-field rule of the load stated as COPY options:

- an empty field of a non-text column is NULL, quoted or not (``FORCE_NULL``);
- an empty field of a text column is ``''`` (``FORCE_NOT_NULL``), or NULL with
  ``empty_text="null"`` (``FORCE_NULL``).

Only where that holds (:func:`csv_copy`): a CSV or TSV file (not ``.tbl``, whose lines end
in a delimiter), whose columns are the load's columns exactly (a column the file lacks is
bound NULL by the other path, where COPY would use its default), into float columns only
of ``DOUBLE PRECISION`` (a ``REAL`` would round the text once, the other path twice). Per
block (:meth:`CsvCopy.wire`): no carriage return (COPY fixes one line ending per command),
no line ``\.`` (COPY's end of data), and, in a file read without quoting, no ``"``. The
chunk must be whole blocks; anything else takes Arrow's writer as before.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ._column_spec import ColumnSpec
from ._dialects import Dialect, TableInfo

__all__ = ["CopyText", "CsvCopy", "csv_copy"]

#: The delimiters and quotes this path takes, as SQL string literals (COPY's options cannot
#: be parameters; only these fixed texts are ever put in the statement).
_DELIMITERS = {",": "','", "\t": "E'\\t'", ";": "';'", "|": "'|'"}
_QUOTES = {'"': "'\"'", "'": "''''"}
#: A line that is COPY's end-of-data marker.
_END_MARKER = re.compile(rb"(?:^|\n)\\\.(?:\n|$)")


@dataclass(frozen=True, slots=True)
class CopyText:
    """What ``ArrowWriter.send`` copies for a chunk of clean blocks: the blocks' bytes, in
    order, into ``columns`` (the file's order) with ``options``."""

    blocks: Sequence[bytes]
    columns: Sequence[str]
    options: str
    #: The quote character, for cutting the text into rows (``_copy_isolation``).
    quote: bytes | None = b'"'


class CsvCopy:
    """One run's form of :class:`CopyText` (see the module's docstring)."""

    def __init__(self, columns: Sequence[str], options: str, quote: str) -> None:
        self.columns = list(columns)
        self.options = options
        self.unquoted = not quote
        self.quote = quote.encode() if quote else None

    def wire(self, texts: Sequence[bytes | None], raw: Any, converted: Any) -> CopyText | None:
        """The chunk's :class:`CopyText`, or None when it must go Arrow's writer: ``texts``
        are its slices' block texts (None for a part of a block), ``raw`` the chunk as read
        and ``converted`` (``_csv_convert.Converted``) what its values became."""
        if not texts or any(t is None for t in texts):
            return None
        if converted.failed or converted.data.num_rows != raw.num_rows:
            return None  # a misfit or an unreadable line: the rows to send are not the text
        if [n for n in raw.schema.names if not n.startswith("\x00")] != self.columns:
            return None
        blocks = [t for t in texts if t is not None]
        for block in blocks:
            if b"\r" in block or (b"\\" in block and _END_MARKER.search(block)):
                return None
            if self.unquoted and b'"' in block:
                return None
        return CopyText(blocks, self.columns, self.options, self.quote)


def csv_copy(
    source: Any,
    specs: Sequence[ColumnSpec] | None,
    empty_text: str,
    header: Sequence[str] | None,
    dialect: Dialect,
    table: TableInfo,
) -> CsvCopy | None:
    """The run's :class:`CsvCopy` when its CSV file may be copied as its text into
    PostgreSQL (see the module's docstring); ``specs`` are the load's columns, ``header``
    the file's columns in order."""
    if dialect.name != "postgresql" or specs is None or header is None:
        return None
    if source.format not in ("csv", "tsv"):
        return None
    delimiter = source.delimiter or ("\t" if source.format == "tsv" else ",")
    quote = '"' if source.quote is None else source.quote
    if delimiter not in _DELIMITERS or (quote and quote not in _QUOTES):
        return None
    if sorted(header) != sorted(s.name for s in specs):
        return None
    for spec in specs:
        if spec.kind == "float" and table.columns.get(spec.name, "").upper() != (
            "DOUBLE PRECISION"
        ):
            return None
    text = [s.name for s in specs if s.kind == "text"]
    other = [s.name for s in specs if s.kind != "text"]
    options = [f"FORMAT csv, DELIMITER {_DELIMITERS[delimiter]}"]
    if quote:
        options.append(f"QUOTE {_QUOTES[quote]}")
    if empty_text == "null":
        other += text
    elif text:
        options.append(f"FORCE_NOT_NULL ({dialect.columns_sql(text)})")
    if other:
        options.append(f"FORCE_NULL ({dialect.columns_sql(other)})")
    return CsvCopy(header, ", ".join(options), quote)
