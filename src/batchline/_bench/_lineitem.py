"""The file ``batchline bench --load`` loads: a CSV shaped like TPC-H's ``lineitem``.

Why generated: dbgen is not on most machines, and issue 13's targets are stated on lineitem
at scale factor 0.1 (600,572 rows). :func:`generate` writes lineitem's 16 columns with its
value shapes (keys, two-place decimals, one-letter flags, dates, words), seeded, so the same
row count gives the same file on every machine; no field needs quoting, as in dbgen's own
output. :func:`spoil` makes the ``--bad`` copy, :func:`check_file` accepts a real lineitem
CSV instead, and :func:`lineitem_table` is the table the native loaders load into (they
need one created beforehand; ``batchline load`` creates its own from the data).
"""

from __future__ import annotations

import csv
import random
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from .._errors import ConfigError

__all__ = [
    "COLUMNS",
    "SF_0_1_ROWS",
    "check_file",
    "generate",
    "lineitem_table",
    "spoil",
]

#: lineitem's row count at TPC-H scale factor 0.1, the size issue 13's targets are set at.
SF_0_1_ROWS = 600_572
COLUMNS = (
    *("l_orderkey", "l_partkey", "l_suppkey", "l_linenumber", "l_quantity"),
    *("l_extendedprice", "l_discount", "l_tax", "l_returnflag", "l_linestatus"),
    *("l_shipdate", "l_commitdate", "l_receiptdate", "l_shipinstruct", "l_shipmode"),
    "l_comment",
)
_WORDS = [
    *("furiously", "regular", "deposits", "sleep", "carefully", "final", "packages"),
    *("haggle", "slyly", "ironic", "accounts", "boost", "quickly", "express", "requests"),
    *("wake", "blithely", "pending", "instructions", "nag", "even", "theodolites"),
    *("cajole", "bold", "pinto", "beans", "integrate"),
]
_INSTRUCT = ["DELIVER IN PERSON", "COLLECT COD", "NONE", "TAKE BACK RETURN"]
_MODES = ["REG AIR", "AIR", "RAIL", "SHIP", "TRUCK", "MAIL", "FOB"]
_SEED = 13


def generate(path: str | Path, rows: int) -> None:
    """Write ``rows`` lineitem-shaped rows and a header line to ``path`` (seeded)."""
    rnd = random.Random(_SEED)
    start = date(1992, 1, 1)
    order, line = 1, 0
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(",".join(COLUMNS) + "\n")
        for _ in range(rows):
            line += 1
            if line > rnd.randint(1, 7):
                order += rnd.randint(1, 4)
                line = 1
            qty = rnd.randint(1, 50)
            price = rnd.randint(90000, 10500000) / 100
            ship = start + timedelta(days=rnd.randrange(2400))
            flag = "R" if ship < date(1995, 6, 17) else "N"
            f.write(
                f"{order},{rnd.randint(1, 20000)},{rnd.randint(1, 1000)},{line},{qty}.00,"
                f"{price * qty:.2f},0.{rnd.randint(0, 10):02d},0.0{rnd.randint(0, 8)},"
                f"{flag},{'F' if flag == 'R' else 'O'},{ship},"
                f"{ship + timedelta(days=rnd.randint(-30, 60))},"
                f"{ship + timedelta(days=rnd.randint(1, 30))},{rnd.choice(_INSTRUCT)},"
                f"{rnd.choice(_MODES)},{' '.join(rnd.choices(_WORDS, k=rnd.randint(2, 6)))}\n"
            )


def spoil(source: str | Path, target: str | Path, percent: float) -> int:
    """Copy ``source`` to ``target`` with ``l_quantity`` not a number in about ``percent``%
    of the rows (seeded); return how many rows were spoiled.

    A quantity such as ``x12`` is a value error in a decimal column, the kind of bad row a
    real export holds: ``batchline load --type l_quantity=decimal(18,2)`` dead-letters it at
    stage ``map`` and loads the rest.
    """
    rnd = random.Random(_SEED + 1)
    column = COLUMNS.index("l_quantity")
    spoiled = 0
    with (
        open(source, encoding="utf-8", newline="") as fin,
        open(target, "w", encoding="utf-8", newline="") as fout,
    ):
        reader, writer = csv.reader(fin), csv.writer(fout, lineterminator="\n")
        writer.writerow(next(reader))
        for row in reader:
            if rnd.random() * 100 < percent:
                row[column] = "x" + row[column]
                spoiled += 1
            writer.writerow(row)
    return spoiled


def check_file(path: str | Path) -> int:
    """The number of rows of the lineitem CSV at ``path``; a :class:`ConfigError` when it
    is not one (the native loaders load into a lineitem table, by position)."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.reader(f)
            header = tuple(name.strip().lower() for name in next(reader, []))
            if header != COLUMNS:
                raise ConfigError(
                    f"{path}: not a lineitem CSV; its first line must be {','.join(COLUMNS)}"
                )
            return sum(1 for _ in reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"{path}: cannot be read as a CSV file ({exc})") from None


def lineitem_table(name: str, metadata: sa.MetaData) -> sa.Table:
    """lineitem's columns and types, for the tables the native loaders load into.

    MySQL and MariaDB get ``VARCHAR(128)`` for the text columns, as a schema written for
    them would have (the generated comments run to 77 characters).
    """
    text = sa.Text().with_variant(sa.String(128), "mysql", "mariadb")
    money = sa.Numeric(18, 2)
    kinds: list[sa.types.TypeEngine[Any]] = [
        *[sa.BigInteger()] * 4,
        *[money] * 4,
        *[text] * 2,
        *[sa.Date()] * 3,
        *[text] * 3,
    ]
    return sa.Table(name, metadata, *(sa.Column(c, k) for c, k in zip(COLUMNS, kinds)))
