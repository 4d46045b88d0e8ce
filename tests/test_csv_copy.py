"""A clean CSV block copied into PostgreSQL as the file's own text (``_csv_copy``): what
lands is what the row path lands (empty fields, quotes, every kind), and a block COPY could
read otherwise goes Arrow's writer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import batchline as bl
from batchline import _arrow_write, _csv_blocks
from batchline._csv_copy import CopyText
from tests._schemas import rows
from tests.test_arrow_write import same
from tests.test_csv_arrow import TYPES, load_twice


class Copied:
    """Rows ``ArrowWriter.send`` sent as the file's text, and rows it sent otherwise."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.text_rows = 0
        self.other_rows = 0
        original = _arrow_write.ArrowWriter.send

        def send(writer: Any, session: Any, data: Any, wire: Any = None) -> None:
            original(writer, session, data, wire)
            if isinstance(wire, CopyText):
                self.text_rows += data.num_rows
            else:
                self.other_rows += data.num_rows

        monkeypatch.setattr(_arrow_write.ArrowWriter, "send", send)


def load_both(
    url: str, path: Path, monkeypatch: pytest.MonkeyPatch, **options: Any
) -> tuple[dict[str, Any], dict[str, Any], Copied]:
    """``load_twice`` (bulk, then the row path), counting what went as the file's text."""
    copied = Copied(monkeypatch)
    bulk, rowwise, _ = load_twice(url, path, monkeypatch, **options)
    return bulk, rowwise, copied


def odd_values(n: int, delimiter: str = ",") -> str:
    """A CSV text of ``n`` records whose every value passes its kind's check unchanged,
    with empty fields (quoted and not) in every column, quoted text holding the delimiter,
    doubled quotes and other scripts."""
    d = delimiter
    lines = [d.join(TYPES)]
    for i in range(n):
        amount = ["12.5", "-0.25", "0", "007.10", '""', ""][i % 6]
        day = ["2024-02-29", "0001-01-01", "9999-12-31", "", '""'][i % 5]
        at = ["2024-01-01 23:59:59.999999", "2024-01-01T00:00:00", "", "1999-12-31 12:00:00.5"][
            i % 4
        ]
        ok = ["true", "NO", "t", "Y", "0", ""][i % 6]
        score = ["1.5", "1e3", ".5", "-2", "3.", "0.1", "1e-7", ""][i % 8]
        note = ["plain", "", '""', f'"a{d}b ""quoted"""', "Zürich 東京", " spaced "][i % 6]
        lines.append(d.join([str(i), amount, day, at, ok, score, note]))
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("empty_text", ["empty", "null"])
def test_clean_blocks_are_copied_as_their_text_and_land_as_the_row_path_lands_them(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch, empty_text: str
) -> None:
    monkeypatch.setattr(_csv_blocks, "BLOCK_BYTES", 2048)  # many blocks
    n = 600
    path = tmp_path / "clean.csv"
    path.write_text(odd_values(n))
    bulk, rowwise, copied = load_both(
        postgres_url, path, monkeypatch, types=TYPES, empty_text=empty_text, chunk_size=100
    )
    assert same(bulk, rowwise)
    assert copied.text_rows == n and copied.other_rows == 0
    assert bulk["job"] == [(n, n, 0, 0, "success")]
    got = {r[0]: r for r in bulk["table"]}
    assert got[2][6] == ("" if empty_text == "empty" else None)  # the empty note, quoted
    assert got[3][6] == 'a,b "quoted"'
    assert got[4][1] is None and got[5][1] is None  # an empty decimal, quoted and not


@pytest.mark.parametrize(("suffix", "delimiter"), [("tsv", "\t"), ("csv", ";")])
def test_other_delimiters_are_copied_as_text(
    tmp_path: Path,
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
    suffix: str,
    delimiter: str,
) -> None:
    path = tmp_path / f"other.{suffix}"
    path.write_text(odd_values(200, delimiter))
    options: dict[str, Any] = {"delimiter": delimiter} if suffix == "csv" else {}
    bulk, rowwise, copied = load_both(postgres_url, path, monkeypatch, types=TYPES, **options)
    assert same(bulk, rowwise)
    assert copied.text_rows == 200


@pytest.mark.parametrize(
    ("text", "options"),
    [
        # a line that is COPY's end-of-data marker, as a value
        ("id\na\n\\.\nb\n", {}),
        # Windows line ends
        ("id,note\r\n1,a\r\n2,b\r\n", {}),
        # read without quoting: a quote is a character of the value
        ('id,note\n1,say "hi"\n2,b\n', {"quote": ""}),
    ],
    ids=["end-marker", "crlf", "unquoted"],
)
def test_a_block_copy_would_read_otherwise_goes_arrows_writer(
    tmp_path: Path,
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
    text: str,
    options: dict[str, Any],
) -> None:
    path = tmp_path / "odd.csv"
    path.write_bytes(text.encode())
    bulk, rowwise, copied = load_both(postgres_url, path, monkeypatch, **options)
    assert same(bulk, rowwise)
    assert copied.text_rows == 0 and copied.other_rows == bulk["job"][0][1] > 0
    assert [r[-1] for r in bulk["table"]][-1] == "b"


def test_a_block_with_a_misfit_and_a_real_column_go_arrows_writer(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a misfit: the rows to send are not the block's text; a REAL column would round the
    # text once where the row path rounds it twice (to a double, then to a float4)
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        for name in ("bulk", "rowwise"):
            conn.execute(sa.text(f"CREATE TABLE {name} (id BIGINT, score REAL)"))
    engine.dispose()
    path = tmp_path / "real.csv"
    path.write_text("id,score\n" + "".join(f"{i},0.{i}1\n" for i in range(100)))
    bulk, rowwise, copied = load_both(postgres_url, path, monkeypatch)
    assert same(bulk, rowwise)
    assert copied.text_rows == 0 and copied.other_rows == 100

    monkeypatch.undo()
    path = tmp_path / "misfit.csv"
    path.write_text("id,qty\n" + "".join(f"{i},{i}\n" for i in range(50)) + "50,x\n")
    copied = Copied(monkeypatch)
    result = bl.load(str(path), postgres_url, table="misfit", types={"qty": "integer"})
    assert result.items_processed == 50 and result.items_failed == 1
    assert copied.text_rows == 0 and copied.other_rows == 50
    assert rows(postgres_url, "SELECT count(*), sum(qty) FROM misfit") == [(50, 1225)]
