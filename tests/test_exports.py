"""The public surface is ``batchline.__all__``: sorted, complete, and nothing in it missing."""

from __future__ import annotations

import inspect

import batchline


def test_every_exported_name_exists_and_the_list_is_sorted() -> None:
    assert batchline.__all__ == sorted(batchline.__all__)
    for name in batchline.__all__:
        assert hasattr(batchline, name), name


def test_every_public_class_and_function_of_the_package_is_exported() -> None:
    public = {
        name
        for name, value in vars(batchline).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and getattr(value, "__module__", "").startswith("batchline")
    }
    assert public <= set(batchline.__all__), public - set(batchline.__all__)


def test_exported_classes_say_where_they_come_from() -> None:
    # a private module's class is documented under its public name
    for name in batchline.__all__:
        value = getattr(batchline, name)
        if inspect.isclass(value):
            assert value.__module__.startswith("batchline."), (name, value.__module__)
            assert value.__doc__, f"{name} has no docstring"


def test_the_library_never_imports_the_command_line_or_the_bench() -> None:
    """The engine, sources and dialects import neither ``batchline.cli`` nor
    ``batchline._bench``: a library user's import pulls in no click, rich tables or
    benchmark workload, and the layers only point one way (the CLI uses the library)."""
    import ast
    from pathlib import Path

    root = Path(batchline.__file__).parent
    offenders = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).parts
        if parts[0] in ("cli", "_bench"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                dots = "." * node.level
                target = f"{dots}{node.module or ''}"
                names = [target] + [f"{target}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            if any(
                ".cli" in n.replace("batchline.", ".") or "._bench" in n.replace("batchline.", ".")
                for n in names
            ):
                offenders.append(f"{path.relative_to(root)}: {names[0]}")
    assert not offenders, offenders
