"""The documentation site: its examples run, it builds strictly, and it covers the public API.

Every fenced ```python block of a page (docs/**/*.md and README.md) runs, in page order, in
one namespace per page, in a fresh temporary directory, against SQLite. Every fenced ```bash
block runs too, one command at a time through ``bash`` in that same directory (so a page can
make a file in a shell block and load it from Python), with this environment's
``batchline`` first on PATH. A command's expected exit code is written in its comment
(``# exit 3: ...``); without one it must exit 0. A block whose first line is the marker
``# docs: skip (reason)`` is shown, not run; it is for the few blocks that need a server
(PostgreSQL, a broker, a Dask scheduler), and the reason is required. Blocks in any other
language (``text``, ``toml`` ...) are output or configuration and are never run.
``docs/writing-docs.md`` says the same for whoever writes a page.

``mkdocs build --strict`` runs here too (into a temporary directory), so a broken link, a
missing API reference or a docstring griffe cannot read fails the test command; a second
build of a deliberately broken copy shows that strictness is really on.
"""

from __future__ import annotations

import linecache
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

import batchline
from batchline.cli import cli

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [*sorted(p.relative_to(ROOT).as_posix() for p in DOCS.rglob("*.md")), "README.md"]

SKIP_MARKER = re.compile(r"^#\s*docs:\s*skip\s*\((?P<reason>[^)]+)\)\s*$")
_FENCE = re.compile(r"^(?P<indent>[ ]*)```(?P<lang>[\w+-]*)[^\n]*$")
_EXIT = re.compile(r"exit\s+(?P<code>\d+)\b")


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page: its language, first line number and text."""

    page: str
    lang: str
    line: int
    text: str

    @property
    def skip_reason(self) -> str | None:
        first = self.text.lstrip("\n").split("\n", 1)[0].strip()
        if not first.startswith("#") or "docs:" not in first:
            return None
        found = SKIP_MARKER.match(first)
        if found is None:
            raise AssertionError(
                f"{self.page}:{self.line}: a skip marker needs a reason: "
                f"'# docs: skip (needs PostgreSQL)', got {first!r}"
            )
        return found["reason"]


def blocks_of(page: str) -> list[Block]:
    """The fenced blocks of ``page``, in order, with their indentation taken off."""
    lines = (ROOT / page).read_text(encoding="utf-8").split("\n")
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent, lang = opening["indent"], opening["lang"].lower()
        body: list[str] = []
        j = i + 1
        while j < len(lines) and lines[j].strip() != "```":
            body.append(lines[j][len(indent) :] if lines[j].startswith(indent) else lines[j])
            j += 1
        assert j < len(lines), f"{page}:{i + 1}: a code block is never closed"
        found.append(Block(page, lang, i + 1, "\n".join(body) + "\n"))
        i = j + 1
    return found


def shell_commands(block: Block) -> list[tuple[int, str, int]]:
    """A bash block's commands as (line, command, expected exit code); ``\\`` continues."""
    commands: list[tuple[int, str, int]] = []
    pending = ""
    start = 0
    for offset, raw in enumerate(block.text.split("\n")):
        line = raw.rstrip()
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if not pending:
            start = block.line + 1 + offset
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        command = pending + line
        pending = ""
        comment = command.split(" #", 1)[1] if " #" in command else ""
        expected = _EXIT.match(comment.strip())
        commands.append((start, command, int(expected["code"]) if expected else 0))
    return commands


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("BATCHLINE_DB", None)  # the pages speak of ./batchline.db, the default
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["COLUMNS"] = "120"
    return env


def _runnable(block: Block) -> bool:
    return block.lang in ("python", "bash") and block.skip_reason is None


EXAMPLE_PAGES = [page for page in PAGES if any(_runnable(b) for b in blocks_of(page))]


@pytest.mark.parametrize("page", EXAMPLE_PAGES)
def test_every_example_on_the_page_runs_against_sqlite(
    page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BATCHLINE_DB", raising=False)
    namespace: dict[str, object] = {"__name__": f"docs_{Path(page).stem.replace('-', '_')}"}
    for block in filter(_runnable, blocks_of(page)):
        if block.lang == "bash":
            for line, command, expected in shell_commands(block):
                done = subprocess.run(
                    ["bash", "-c", command],
                    cwd=tmp_path,
                    env=_environment(),
                    capture_output=True,
                    text=True,
                    timeout=120,
                )
                assert done.returncode == expected, (
                    f"{page}:{line}: `{command}` exited {done.returncode}, the page says "
                    f"{expected}\n--- stdout\n{done.stdout[-3000:]}\n--- stderr\n"
                    f"{done.stderr[-3000:]}"
                )
            continue
        name = f"{page}:{block.line}"
        # so a failing example's traceback shows the page's own lines
        linecache.cache[name] = (len(block.text), None, block.text.splitlines(True), name)
        code = compile(block.text, name, "exec")
        exec(code, namespace)


def test_skip_markers_are_few_and_say_why() -> None:
    skipped = [b for page in PAGES for b in blocks_of(page) if b.skip_reason is not None]
    runnable = [b for page in PAGES for b in blocks_of(page) if _runnable(b)]
    assert all(b.skip_reason for b in skipped)
    # A skipped block is one a renamed parameter can silently break: keep them the exception.
    assert len(skipped) * 3 < len(runnable), [f"{b.page}:{b.line}" for b in skipped]


def test_shell_blocks_read_their_expected_exit_codes() -> None:
    block = Block("x.md", "bash", 1, "batchline demo   # exit 3: ten bad lines\nls \\\n  -l\n")
    assert shell_commands(block) == [
        (2, "batchline demo   # exit 3: ten bad lines", 3),
        (3, "ls    -l", 0),
    ]


def test_the_api_reference_documents_every_public_name() -> None:
    api = (DOCS / "reference" / "api.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^::: batchline\.(\w+)\s*$", api, re.MULTILINE))
    missing = sorted(set(batchline.__all__) - {"__version__"} - documented)
    assert not missing, f"add to docs/reference/api.md: {missing}"


def test_the_readme_links_only_to_files_inside_the_repository() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)\s]+)\)", readme)
    assert targets
    for target in targets:
        if re.match(r"https?://", target):
            continue
        path = (ROOT / target.split("#", 1)[0]).resolve()
        assert path.is_relative_to(ROOT) and path.exists(), f"README links to {target}"


def _build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    started = time.monotonic()
    done = _build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "reference" / "cli" / "index.html").exists()
    cli_page = (tmp_path / "site" / "reference" / "cli" / "index.html").read_text("utf-8")
    for option in ("--idempotency-key", "--dead-letter-payload", "--linger-ms", "--latency-ms"):
        assert option in cli_page, f"the generated CLI reference lacks {option}"
    with click.Context(cli) as ctx:
        for name in cli.list_commands(ctx):  # bench included: it is loaded lazily
            assert f'id="batchline-{name}"' in cli_page, f"the CLI reference lacks {name}"
    api_page = (tmp_path / "site" / "reference" / "api" / "index.html").read_text("utf-8")
    assert "chunk_seconds" in api_page  # drawn from Pipeline's signature
    print(f"mkdocs build --strict: {time.monotonic() - started:.1f} s")


def test_a_broken_link_or_reference_fails_the_strict_build(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    shutil.copytree(DOCS, docs)
    page = docs / "getting-started.md"
    page.write_text(
        page.read_text("utf-8")
        + "\nSee [nowhere](no-such-page.md) and [a name][batchline.NoSuchThing].\n",
        "utf-8",
    )
    config = (ROOT / "mkdocs.yml").read_text("utf-8")
    config = config.replace("docs_dir: docs", f"docs_dir: {docs}")
    config = config.replace("paths: [src]", f"paths: [{ROOT / 'src'}]")
    (tmp_path / "mkdocs.yml").write_text(config, "utf-8")
    done = _build(tmp_path / "mkdocs.yml", tmp_path / "site")
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "no-such-page.md" in output
    assert "batchline.NoSuchThing" in output
