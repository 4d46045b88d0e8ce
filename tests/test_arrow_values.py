"""Arrow values made without converting Python objects (``_arrow_values``): equal to what
``pa.scalar``/``pa.array`` make, and a CSV or JSON Lines load in bulk never imports pandas."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from batchline._arrow_values import bool_scalar, null_of, text_array, text_scalar


def test_the_values_equal_pyarrows_own() -> None:
    words = ["", "a", "Zürich 東京", '"', "NULL"]
    assert text_array(words).equals(pa.array(words, pa.string()))
    assert text_array(words, pa.large_string()).equals(pa.array(words, pa.large_string()))
    assert text_scalar("x", pa.large_string()) == pa.scalar("x", pa.large_string())
    assert bool_scalar(True) == pa.scalar(True) and bool_scalar(False) == pa.scalar(False)
    assert null_of(pa.string()) == pa.scalar(None, pa.string())


@pytest.mark.parametrize("suffix", ["csv", "jsonl"])
def test_a_load_in_bulk_does_not_import_pandas(tmp_path: Path, db_url: str, suffix: str) -> None:
    # pyarrow imports pandas (a quarter of a second) the first time a Python value is
    # made an Arrow value; the bulk path of a clean CSV or JSON Lines file makes none
    pytest.importorskip("pandas")
    path = tmp_path / f"plain.{suffix}"
    keys = ("id", "amount", "day", "at", "ok", "score", "note")
    rows = [
        (i, f"{i}.25", f"2024-01-0{1 + i % 9}", f"2024-01-01 00:00:0{i % 10}", True, 1.5, f"n{i}")
        for i in range(50)
    ]
    if suffix == "csv":
        lines = [",".join(keys), *(",".join(map(str, r)) for r in rows)]
    else:
        lines = [json.dumps(dict(zip(keys, r))) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    script = (
        "import sys, batchline as bl\n"
        "result = bl.load(sys.argv[1], sys.argv[2], table='plain')\n"
        "assert result.items_processed == 50, result\n"
        "print('pandas' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(path), db_url],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "False"
