"""The ``batchline`` command line: load files, run the demo, manage jobs and dead letters.

Thin by design: each command parses its options, calls the public API and renders the
outcome. Exit codes: 0 success, 3 partial success, 1 failed, 2 usage or input error; errors
become one line on standard error (``_common``). ``load`` lives in ``_load``, ``demo`` in
``_demo``, ``jobs`` and ``dlq`` in ``_dlq``, ``consume`` in ``_consume``, the rendering in
``_render``; this module holds the group, its logging switch and the registration of each
command, and ``bench`` is loaded from ``batchline._bench`` when that module is there.
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import ClassVar

import click

from .. import __version__
from ._common import EXIT_CODES
from ._consume import consume
from ._demo import demo
from ._dlq import dlq, jobs
from ._load import load

__all__ = ["EXIT_CODES", "cli", "main"]


class _Group(click.Group):
    """The command group; ``bench`` comes from ``batchline._bench`` when that is installed."""

    _LAZY: ClassVar[dict[str, tuple[str, str]]] = {"bench": ("batchline._bench", "bench_command")}

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = set(super().list_commands(ctx))
        names.update(name for name in self._LAZY if self._lazy(name) is not None)
        return sorted(names)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in self._LAZY:
            command = self._lazy(cmd_name)
        return command

    def _lazy(self, name: str) -> click.Command | None:
        module_name, attribute = self._LAZY[name]
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            return None
        command = getattr(module, attribute, None)
        return command if isinstance(command, click.Command) else None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="batchline")
@click.option("--verbose", "-v", is_flag=True, help="Log each dead letter and retry on stderr.")
def cli(verbose: bool) -> None:
    """batchline: fast, failure-tolerant batched loading into SQLite, PostgreSQL and MySQL.

    Records are collected and written in chunks as set-based statements; a bad record is
    isolated into a dead-letter table with its line number and reason while the good ones
    commit, and a job resumes where it stopped. Exit codes: 0 success, 3 partial success
    (some records are dead letters), 1 failed, 2 usage or input error.
    """
    _configure_logging(verbose)


class _VerboseHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes batchline's log (each dead letter, each retry) to stderr under ``--verbose``."""


def _configure_logging(verbose: bool) -> None:
    """Quiet by default (the summary reports failures); ``--verbose`` shows the log.

    Running commands in one process (tests, notebooks) does not stack handlers, and
    handlers others attached are left alone.
    """
    log = logging.getLogger("batchline")
    if not any(isinstance(h, logging.NullHandler) for h in log.handlers):
        log.addHandler(logging.NullHandler())  # no "last resort" printing of warnings
    for old in [h for h in log.handlers if isinstance(h, _VerboseHandler)]:
        log.removeHandler(old)  # its stream may be a previous invocation's
    if verbose:
        handler = _VerboseHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("batchline: %(message)s"))
        log.addHandler(handler)
        if log.getEffectiveLevel() > logging.DEBUG:
            log.setLevel(logging.DEBUG)  # each dead letter is logged at DEBUG


def main() -> None:
    """The console-script entry point."""
    cli(prog_name="batchline")


cli.add_command(load)
cli.add_command(demo)
cli.add_command(jobs)
cli.add_command(dlq)
cli.add_command(consume)
