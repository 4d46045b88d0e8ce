"""What every ``batchline`` command shares: exit codes, one-line errors, database checks.

Library errors become one clear line on standard error and an exit code here, and nowhere
else:

    0  success            3  partial success (some records are dead letters)
    1  failed             2  usage or input error (missing file, bad URL, unreachable database)

Passwords in database URLs are never printed: URLs are shown redacted, and any message that
could carry one is scrubbed before it is shown.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, NoReturn, TypeVar, cast
from urllib.parse import quote, quote_plus

import click
import sqlalchemy as sa

from .._database import make_engine, redact_url
from .._dead_letters import DeadLetters
from .._dialects import dialect_for
from .._errors import (
    BatchlineError,
    ConfigError,
    DatabaseError,
    JobLocked,
    JobSpecMismatch,
    ResumeMismatch,
    SourceError,
)
from ._render import render_result, stdout_console

__all__ = [
    "DEFAULT_DB",
    "DEMO_DB",
    "EXIT_CODES",
    "EXIT_USAGE",
    "Secrets",
    "check_database",
    "cli_wording",
    "database_url",
    "db_hint",
    "db_option",
    "dead_letters",
    "emit_result",
    "fail",
    "handled",
    "json_option",
    "shown_url",
    "stored_database_url",
    "wait_option",
]

EXIT_CODES = {"success": 0, "partial_success": 3, "failed": 1}
EXIT_USAGE = 2
DEFAULT_DB = "sqlite:///batchline.db"
DEMO_DB = "sqlite:///batchline-demo.db"  # a file of its own: the demo drops its tables
_PG_CONNECT_TIMEOUT = "10"  # seconds; an unreachable host should fail fast, not hang

F = TypeVar("F", bound=Callable[..., Any])


# -- errors -------------------------------------------------------------------------------------


class Secrets:
    """Passwords seen in URLs on this invocation, scrubbed from every message shown."""

    values: ClassVar[set[str]] = set()

    @classmethod
    def scrub(cls, text: str) -> str:
        for secret in cls.values:
            if secret:
                text = text.replace(secret, "***")
        return text


# The library speaks Python ("pass restart=True"); the command line has options for those.
_CLI_WORDS = (
    ("(restart=True to redo)", "(pass --restart to redo)"),
    ("(wait=True, or --wait)", "(--wait)"),
    ("(wait=True / --wait)", "(--wait)"),
    ("another job name", "another --job"),
    ("restart=True", "--restart"),
)


def cli_wording(message: str) -> str:
    """A library message with its Python parameters named as the command line's options."""
    for python, option in _CLI_WORDS:
        message = message.replace(python, option)
    return message


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print one line on standard error and exit with ``code``."""
    line = " ".join(Secrets.scrub(cli_wording(message)).split())
    click.echo(f"batchline: error: {line}", err=True)
    raise click.exceptions.Exit(code)


def handled(fn: F) -> F:
    """Turn library and driver errors into one line and an exit code (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except JobSpecMismatch as exc:
            fail(_spec_mismatch(exc), EXIT_USAGE)
        except (SourceError, ConfigError, ResumeMismatch, JobLocked) as exc:
            fail(str(exc), EXIT_USAGE)
        except DatabaseError as exc:
            fail(str(exc), 1)
        except BatchlineError as exc:
            fail(str(exc), 1)
        except sa.exc.SQLAlchemyError as exc:
            fail(f"database error: {_driver_message(exc)}", 1)
        except OSError as exc:
            fail(str(exc), EXIT_USAGE)
        except KeyboardInterrupt:
            fail("interrupted; committed chunks stay committed, re-run with the same --job", 130)

    return cast(F, wrapper)


def _spec_mismatch(exc: JobSpecMismatch) -> str:
    """The refusal of a changed load, in the options the user typed."""
    differences = exc.differences
    restart = "use another --job or pass --restart to start it over"
    command = next((d for d in differences if d[0] == "command"), None)
    if command is not None:
        started = f"batchline {command[1]}" if command[1] else "Python code"
        return f"job {exc.job!r} was started by {started}, not batchline {command[2]}; {restart}"
    started = ", ".join(_as_option(key, old, new) for key, old, new in differences)
    given = ", ".join(_as_option(key, new, old) for key, old, new in differences)
    return f"job {exc.job!r} was started with {started}, this command says {given}; {restart}"


_OPTIONS = {
    "table": "--table",
    "key": "--key",
    "columns": "--columns",
    "idempotency_key": "--idempotency-key",
}


def _as_option(key: str, value: Any, other: Any) -> str:
    """One side of a spec difference as the option that says it (``other``: the other side)."""
    if key == "mode":
        flags = {"upsert": "--upsert", "increment": "--increment"}
        if value in flags:
            return flags[value]
        return "no " + flags.get(other, "--upsert or --increment")
    if key == "file":
        return "standard input" if value == "-" else f"the file {value}"
    if key == "schema":
        return _column_types(value, other)
    if value in (None, "", []):
        return "no " + _OPTIONS.get(key, key)
    shown = ",".join(map(str, value)) if isinstance(value, list) else str(value)
    if key in _OPTIONS:
        return f"{_OPTIONS[key]} {shown}"
    return f"{key} {json.dumps(value)}"


def _column_types(value: Any, other: Any) -> str:
    """The column kinds (``spec["schema"]``) of one side, only the columns that differ."""

    def kinds(schema: Any) -> dict[str, str]:
        if not isinstance(schema, list):
            return {}
        return {
            str(c.get("name")): str(c.get("kind"))
            for c in schema
            if isinstance(c, dict) and c.get("name") is not None
        }

    mine, theirs = kinds(value), kinds(other)
    changed = [f"{name} {kind}" for name, kind in mine.items() if theirs.get(name) != kind]
    return "column types " + (", ".join(changed) if changed else "(none)")


def _driver_message(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return text[0] if text else type(orig).__name__


# -- databases ----------------------------------------------------------------------------------


def database_url(db: str | None) -> str:
    """The URL to use: ``--db``, else ``$BATCHLINE_DB``, else a SQLite file here."""
    url = db or os.environ.get("BATCHLINE_DB") or DEFAULT_DB
    try:
        parsed = sa.make_url(url)
    except Exception:
        fail(f"not a database URL: {redact_url(url)} (expected e.g. {DEFAULT_DB})")
    if parsed.password:
        password = str(parsed.password)
        Secrets.values.update({password, quote_plus(password), quote(password, safe="")})
    if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
        parsed = parsed.update_query_dict({"connect_timeout": _PG_CONNECT_TIMEOUT})
        return parsed.render_as_string(hide_password=False)
    return url


def check_database(url: str, *, must_exist: bool = False) -> None:
    """Fail with exit 2 and one line when the database is unusable or unreachable."""
    parsed = sa.make_url(url)
    if must_exist and parsed.get_backend_name() == "sqlite":
        path = parsed.database or ""
        if (
            path not in ("", ":memory:")
            and not path.startswith("file:")
            and not os.path.exists(path)
        ):
            fail(f"no database at {path} (pass --db or set BATCHLINE_DB)")
    try:
        engine, _ = make_engine(url)
    except ConfigError as exc:
        fail(str(exc))
    try:
        dialect_for(engine)
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except ConfigError as exc:
        fail(str(exc))
    except Exception as exc:
        fail(f"cannot connect to {shown_url(url)}: {_driver_message(exc)}")
    finally:
        engine.dispose()


def stored_database_url(db: str | None) -> str:
    """The database ``jobs`` and ``dlq`` read: as :func:`database_url`, except that without
    ``--db`` or ``$BATCHLINE_DB``, when there is no ``batchline.db`` here but the demo's
    database is, they read the demo's (a first session: ``batchline demo``, then ``jobs``)."""
    if db or os.environ.get("BATCHLINE_DB"):
        return database_url(db)
    if not os.path.exists(_sqlite_path(DEFAULT_DB)) and os.path.exists(_sqlite_path(DEMO_DB)):
        return database_url(DEMO_DB)
    return database_url(None)


def _sqlite_path(url: str) -> str:
    return sa.make_url(url).database or ""


@contextmanager
def dead_letters(db: str | None) -> Iterator[DeadLetters]:
    """The dead letters (and jobs) of ``--db``, which must exist and answer."""
    url = stored_database_url(db)
    if db is None and url != database_url(None):
        click.echo(
            f"batchline: no {_sqlite_path(DEFAULT_DB)} here: reading the demo's database, "
            f"{_sqlite_path(DEMO_DB)} (--db chooses another)",
            err=True,
        )
    check_database(url, must_exist=True)
    letters = DeadLetters(url)
    try:
        yield letters
    finally:
        letters.close()


db_option = click.option(
    "--db",
    metavar="URL",
    help=f"Database URL (default: $BATCHLINE_DB, else {DEFAULT_DB} in this directory).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
wait_option = click.option(
    "--wait",
    type=click.FloatRange(min=0),
    is_flag=False,
    flag_value=float("inf"),
    default=0.0,
    metavar="[SECONDS]",
    help="When another runner holds the job, wait for it to end (at most SECONDS; no value: "
    "as long as it takes) instead of stopping at once with exit 2.",
)


def shown_url(url: str) -> str:
    """The URL as the user gave it, password masked (without the timeout added here)."""
    parsed = sa.make_url(url)
    query = {k: v for k, v in parsed.query.items() if k != "connect_timeout"}
    return parsed.set(query=query).render_as_string(hide_password=True)


def db_hint(url: str) -> str:
    """`` --db URL`` (password masked) for a ``jobs`` or ``dlq`` command suggested to the
    user, unless that command finds ``url`` without it."""
    if url == stored_database_url(None):
        return ""
    return " --db " + shown_url(url)


def emit_result(
    result: Any,
    *,
    as_json: bool,
    quiet: bool,
    title: str,
    url: str,
    letters_job: str | None = None,
) -> NoReturn:
    """Print a run's Result (a summary, or JSON) and exit with its status's code.

    ``letters_job``: the job whose dead letters the summary points to, when not the run's.
    """
    data = result.to_dict()
    if data.get("message"):
        data["message"] = cli_wording(str(data["message"]))
    if as_json:
        click.echo(json.dumps(data, default=str))
    elif not quiet:
        render_result(
            stdout_console(), data, title=title, db_hint=db_hint(url), letters_job=letters_job
        )
    if result.error:
        hint = f"; re-run with --job {result.job} to resume" if title.startswith("load") else ""
        click.echo(f"batchline: {Secrets.scrub(cli_wording(result.error))}{hint}", err=True)
    raise click.exceptions.Exit(EXIT_CODES.get(str(result.status), 1))
