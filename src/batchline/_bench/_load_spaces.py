"""Where and how ``batchline bench --load`` loads: a scratch space per database, and the
loaders as the processes a user would start.

Why a scratch space: ``batchline load`` keeps its jobs and dead letters in the target
database, so the bench works in a PostgreSQL schema or MySQL database of its own (dropped at
the end) or, on SQLite, a directory of its own with a file per loader, and leaves nothing
behind. Why processes: the figures are to be those of the commands people run, so every
loader (``psql \\copy``, the sqlite3 shell's ``.import``, the MySQL client's ``LOAD DATA
LOCAL INFILE``, a pandas script, ``batchline load``) is a fresh process, started here and
timed by ``_load_bench``. Passwords reach the children through their environment
(``PGPASSWORD``, ``MYSQL_PWD``, ``BATCHLINE_DB``), never their command lines, and every
URL or command shown is redacted.
"""

from __future__ import annotations

import importlib.util
import secrets
import shlex
import shutil
import sqlite3
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, quote_plus

import sqlalchemy as sa

from .._database import make_engine, redact_url
from .._errors import ConfigError
from ._lineitem import lineitem_table

__all__ = ["Loader", "Space", "open_space"]

#: The pandas a DataFrame user writes: read the file, ``to_sql`` in chunks of 5,000.
_PANDAS = (
    "import os, sys, pandas as pd, sqlalchemy as sa; "
    "engine = sa.create_engine(os.environ['BATCHLINE_BENCH_URL']); "
    "pd.read_csv(sys.argv[1]).to_sql(sys.argv[2], engine, index=False, chunksize=5000)"
)
#: What ``--bad`` loads with: the quantity declared, so a value that is not a number is an
#: outlier dead-lettered at stage map rather than a reason to make the column text.
BAD_TYPES = ("--type", "l_quantity=decimal(18,2)")
_NAMES = {"postgresql": "PostgreSQL", "sqlite": "SQLite", "mysql": "MySQL"}


@dataclass
class Loader:
    """One way of loading one file into one table: a command, run as a process of its own."""

    key: str  # "native", "pandas", "batchline" or "batchline-bad"
    name: str  # as shown: "psql \\copy", "batchline load, 1% bad"
    table: str
    expected_rows: int
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # may hold a password: never shown
    stdin: Path | None = None
    ok_codes: tuple[int, ...] = (0,)
    shown: str = ""  # the command as a person would type it, password masked
    skipped: str | None = None  # why it does not run here (no client on PATH, no pandas)


class Space:
    """A database's scratch space: its tables, how to empty and count them, its loaders."""

    def __init__(self, url: sa.URL, work: Path, shown: str) -> None:
        self.url = url
        self.work = work
        self.shown = shown  # the database as reported: redacted URL or "temporary SQLite file"
        self.backend = "mysql" if url.get_backend_name() == "mariadb" else url.get_backend_name()
        self.name = _NAMES.get(self.backend, self.backend)
        self.server_version = ""
        self._secrets = {s for p in [url.password] if p for s in (str(p), quote_plus(str(p)))}
        self._secrets |= {quote(s, safe="") for s in self._secrets}

    # -- set up and tear down ---------------------------------------------------------------
    def setup(self) -> None:
        """Create the scratch space and read the server's version."""
        raise NotImplementedError

    def teardown(self) -> None:
        """Drop the scratch space and everything in it."""
        raise NotImplementedError

    def admin(self) -> _Disposing:
        return _Disposing(self.url)

    # -- tables -----------------------------------------------------------------------------
    def url_for(self, table: str) -> sa.URL:
        """The URL a loader of ``table`` connects to (password included: for children)."""
        raise NotImplementedError

    def reset(self, loader: Loader) -> None:
        """Empty the place ``loader`` loads into; a native loader's table is created."""
        with _Disposing(self.url_for(loader.table)) as engine:
            table = sa.Table(loader.table, sa.MetaData())
            table.drop(engine, checkfirst=True)
            if loader.key == "native":
                lineitem_table(loader.table, sa.MetaData()).create(engine)

    def count(self, table: str) -> int:
        """Rows in ``table`` as read back from the database."""
        with _Disposing(self.url_for(table)) as engine, engine.connect() as conn:
            query = sa.select(sa.func.count()).select_from(sa.table(table))
            return int(conn.execute(query).scalar_one())

    # -- loaders ----------------------------------------------------------------------------
    def loaders(
        self, csv: Path, rows: int, bad_csv: Path | None, bad_rows: int, bad: float
    ) -> list[Loader]:
        """The native loader, pandas, ``batchline load``, and the bad file's load."""
        found = [self.native(Loader("native", "", "lineitem_native", rows, stdin=csv), csv)]
        pandas = Loader("pandas", "pandas read_csv + to_sql(5000)", "lineitem_pandas", rows)
        if importlib.util.find_spec("pandas") is None:
            pandas.skipped = "pandas is not installed (pip install 'batchline[bench]')"
        url = self.url_for(pandas.table)
        pandas.argv = [sys.executable, "-c", _PANDAS, str(csv), pandas.table]
        pandas.env = {"BATCHLINE_BENCH_URL": url.render_as_string(hide_password=False)}
        pandas.shown = f"python -c '<read_csv + to_sql>' {csv.name} {pandas.table}"
        found.append(pandas)
        found.append(self._batchline("batchline", "batchline load", csv, rows, ()))
        if bad_csv is not None:
            name = f"batchline load, {bad:g}% bad"
            found.append(self._batchline("batchline-bad", name, bad_csv, bad_rows, BAD_TYPES))
        return found

    def _batchline(self, key: str, name: str, csv: Path, rows: int, extra: Sequence[str]) -> Loader:
        table = "lineitem_" + key.replace("-", "_")
        url = self.url_for(table)
        args = ["load", str(csv), "--table", table, "-q", *extra]
        return Loader(
            key,
            name,
            table,
            rows,
            argv=[sys.executable, "-m", "batchline.cli", *args],
            env={"BATCHLINE_DB": url.render_as_string(hide_password=False)},
            ok_codes=(0, 3) if extra else (0,),
            shown=shlex.join(["batchline", *args[:2], "--db", redact_url(url), *args[2:]]),
        )

    def native(self, loader: Loader, csv: Path) -> Loader:
        """Fill in ``loader`` with this database's own bulk loader."""
        raise NotImplementedError

    def scrub(self, text: str) -> str:
        """``text`` (a child's error output) with the password masked."""
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text


class _Disposing:
    """An engine for one step, disposed of after it (the children need the connections)."""

    def __init__(self, url: sa.URL) -> None:
        self.engine, _ = make_engine(url)

    def __enter__(self) -> sa.Engine:
        return self.engine

    def __exit__(self, *exc: object) -> None:
        self.engine.dispose()


def _client(loader: Loader, *names: str) -> str:
    """The first of ``names`` on PATH; else ``loader`` is marked skipped, saying why."""
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    loader.skipped = f"{' or '.join(names)} is not on PATH"
    return names[0]


def _safe_path(path: Path) -> str:
    """``path`` for a client's command text, where it cannot be a bound parameter: only
    paths under the bench's own temporary directory are used, and these are checked."""
    text = str(path)
    if any(c in text for c in "'\"\\\n`"):
        raise ConfigError(f"the temporary directory's path has a quote in it: {text!r}")
    return text


class _SqliteSpace(Space):
    """SQLite: a directory of its own (next to the file --db names), a file per loader."""

    def setup(self) -> None:
        given = self.url.database
        parent = Path(given).resolve().parent if given and given != ":memory:" else self.work
        try:
            self.dir = Path(tempfile.mkdtemp(prefix="bench-load-", dir=parent))
        except OSError as exc:
            raise ConfigError(f"{self.shown}: no scratch directory in {parent}: {exc}") from None
        self.server_version = sqlite3.sqlite_version  # the module batchline and pandas use

    def teardown(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def url_for(self, table: str) -> sa.URL:
        return self.url.set(database=str(self.dir / f"{table}.db"))

    def reset(self, loader: Loader) -> None:
        Path(self.url_for(loader.table).database or "").unlink(missing_ok=True)
        super().reset(loader)

    def native(self, loader: Loader, csv: Path) -> Loader:
        shell = _client(loader, "sqlite3")
        db = self.url_for(loader.table).database or ""
        command = f'.import --csv --skip 1 "{_safe_path(csv)}" {loader.table}'
        loader.name, loader.stdin = "sqlite3 .import --csv", None
        loader.argv = [shell, db, command]
        loader.shown = shlex.join(["sqlite3", Path(db).name, command])
        return loader


class _ServerSpace(Space):
    """A database server: a schema of its own (on MySQL and MariaDB, a database)."""

    cascade = False  # DROP SCHEMA … CASCADE (PostgreSQL; MySQL's DROP DATABASE drops all)

    def setup(self) -> None:
        self.schema = f"bench_load_{secrets.token_hex(4)}"
        with self.admin() as engine, engine.begin() as conn:
            conn.execute(sa.schema.CreateSchema(self.schema))
        try:
            with self.admin() as engine, engine.connect() as conn:
                version = conn.dialect.server_version_info or ()
                if getattr(conn.dialect, "is_mariadb", False):
                    self.name = "MariaDB"
        except BaseException:
            self.teardown()
            raise
        self.server_version = ".".join(str(v) for v in version)

    def teardown(self) -> None:
        with self.admin() as engine, engine.begin() as conn:
            conn.execute(sa.schema.DropSchema(self.schema, cascade=self.cascade, if_exists=True))

    def _where(self, port: str, user: str) -> list[str]:
        """The client's host, port and user options, as the URL gives them."""
        u, args = self.url, []
        for flag, value in (("-h", u.host), (port, u.port), (user, u.username)):
            if value:
                args += [flag, str(value)]
        return args


class _PostgresSpace(_ServerSpace):
    """PostgreSQL: the schema is reached through ``search_path``."""

    cascade = True

    def url_for(self, table: str) -> sa.URL:
        return self.url.update_query_dict({"options": f"-csearch_path={self.schema}"})

    def native(self, loader: Loader, csv: Path) -> Loader:
        psql = _client(loader, "psql")
        args = ["-X", "-q", "-v", "ON_ERROR_STOP=1", *self._where("-p", "-U")]
        args += ["-d", self.url.database or "postgres"]
        command = f'\\copy "{loader.table}" FROM pstdin WITH (FORMAT csv, HEADER true)'
        loader.name = "psql \\copy"
        loader.argv = [psql, *args, "-c", command]
        loader.env = {"PGOPTIONS": f"-csearch_path={self.schema}"}
        if self.url.password:
            loader.env["PGPASSWORD"] = str(self.url.password)
        loader.shown = f"{shlex.join(['psql', *args, '-c', command])} < {csv.name}"
        return loader


class _MysqlSpace(_ServerSpace):
    """MySQL and MariaDB: the schema is the URL's database."""

    def url_for(self, table: str) -> sa.URL:
        return self.url.set(database=self.schema)

    def native(self, loader: Loader, csv: Path) -> Loader:
        client = _client(loader, "mariadb", "mysql")
        args = ["--local-infile=1", *self._where("-P", "-u"), self.schema]
        command = (
            f"LOAD DATA LOCAL INFILE '{_safe_path(csv)}' INTO TABLE `{loader.table}` "
            "FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' IGNORE 1 LINES"
        )
        loader.name, loader.stdin = "LOAD DATA LOCAL INFILE", None
        loader.argv = [client, *args, "-e", command]
        loader.env = {"MYSQL_PWD": str(self.url.password)} if self.url.password else {}
        loader.shown = shlex.join([Path(client).name, *args, "-e", command])
        return loader


_SPACES: dict[str, type[Space]] = {
    "sqlite": _SqliteSpace,
    "postgresql": _PostgresSpace,
    "mysql": _MysqlSpace,
    "mariadb": _MysqlSpace,
}


def open_space(db: str | None, work: Path) -> Space:
    """The scratch space for ``db`` (None: a temporary SQLite file), set up."""
    if db is None:
        url, shown = sa.make_url(f"sqlite:///{work / 'bench.db'}"), "temporary SQLite file"
    else:
        engine, _ = make_engine(db)  # the driver batchline uses, as the user's load would
        url, shown = engine.url, redact_url(engine.url)
        engine.dispose()
    kind = _SPACES.get(url.get_backend_name())
    if kind is None:
        raise ConfigError(f"{shown}: --load runs on SQLite, PostgreSQL and MySQL/MariaDB")
    space = kind(url, work, shown)
    space.setup()
    return space
