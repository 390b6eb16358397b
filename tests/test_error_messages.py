"""Every BuildError the package raises says what was expected, what was received and how
to fix it (checked on the source, so a new error cannot forget one)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "flowdl"


def build_error_calls() -> list[tuple[str, int, set[str]]]:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "BuildError":
                found.append((path.name, node.lineno, {k.arg for k in node.keywords if k.arg}))
    return found


def test_there_are_build_errors_to_check() -> None:
    assert len(build_error_calls()) >= 25


def test_every_build_error_has_expected_received_and_fix() -> None:
    missing = [
        f"{name}:{line} lacks {sorted({'expected', 'received', 'fix'} - keys)}"
        for name, line, keys in build_error_calls()
        if not {"expected", "received", "fix"} <= keys
    ]
    assert not missing, "\n".join(missing)


def test_every_build_error_names_the_builder_call() -> None:
    # the cycle check in the planner sees the whole graph, not one call
    missing = [
        f"{name}:{line}"
        for name, line, keys in build_error_calls()
        if "call" not in keys and name != "planner.py"
    ]
    assert not missing, "\n".join(missing)
