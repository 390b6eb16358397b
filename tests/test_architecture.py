"""The floor plan of ``docs/architecture.md``, checked on the source.

Each module lives on a floor and imports only from its own floor or below; flowdl
modules are imported at module level (the deliberate lazy loads are listed here and
in the document); no file switches off a mypy error code or grows past 450 lines;
the step dispatch is written in one file; and ``import flowdl`` loads neither the
HTTP server nor psutil nor rich.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = SRC / "flowdl"
DOC = Path(__file__).resolve().parent.parent / "docs" / "architecture.md"

FLOORS: list[tuple[str, tuple[str, ...]]] = [
    (
        "ground",
        (
            "flowdl._version",
            "flowdl._errors",
            "flowdl._file_error",
            "flowdl._describe",
            "flowdl._format",
            "flowdl._files",
            "flowdl._eta",
            "flowdl._log",
            "flowdl._context",
            "flowdl.protocols",
        ),
    ),
    (
        "records",
        (
            "flowdl._ir.nodes",
            "flowdl._ir.record",
            "flowdl._executor.state",
            "flowdl._executor.plan",
        ),
    ),
    ("parts", ("flowdl._ir", "flowdl._watch", "flowdl._control", "flowdl._nodes")),
    ("core", ("flowdl._executor",)),
    (
        "features",
        (
            "flowdl._tree",
            "flowdl._observe",
            "flowdl._profile",
            "flowdl._draw",
            "flowdl._replace",
            "flowdl._checkpoint",
            "flowdl._web",
        ),
    ),
    ("roof", ("flowdl._graph", "flowdl._builder")),
    (
        "tools",
        (
            "flowdl._monitor",
            "flowdl.data",
            "flowdl._bench",
            "flowdl._fuzz",
            "flowdl._cli",
            "flowdl",
        ),
    ),
]
"""The floors, lowest first, and the modules (or packages) on each."""

LAZY_IMPORTS = {
    ("flowdl._monitor.monitor", "flowdl._monitor.server"),
    ("flowdl._cli", "flowdl._cli.demo"),
    ("flowdl._cli.bench", "flowdl._bench.protocol"),
    ("flowdl._cli.bench", "flowdl._bench.report"),
    ("flowdl._cli.bench", "flowdl._bench.suite"),
    ("flowdl._cli.bench", "flowdl._cli.bench_dynamic"),
    ("flowdl._cli.bench_dynamic", "flowdl._bench.dynamic.models"),
    ("flowdl._cli.bench_dynamic", "flowdl._bench.dynamic.report"),
    ("flowdl._cli.bench_dynamic", "flowdl._bench.dynamic.run"),
    ("flowdl._cli.fuzz", "flowdl._fuzz.run"),
}
"""Imports of flowdl modules inside functions: the HTTP server, loaded when a dashboard
is first served, and the command line's commands, loaded when run."""


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def floor_of(module: str) -> int:
    best, floor = -1, -1
    for index, (_, prefixes) in enumerate(FLOORS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, floor = len(prefix), index
    assert floor >= 0, f"{module} is on no floor: add it to FLOORS and docs/architecture.md"
    return floor


def imported(module: str, path: Path) -> list[tuple[str, bool, bool]]:
    """``(flowdl module, inside a function, under TYPE_CHECKING)`` for each import."""
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: list[tuple[str, bool, bool]] = []

    def target(node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        base = package.split(".")[: len(package.split(".")) - node.level + 1]
        return ".".join([*base, *([node.module] if node.module else [])])

    def visit(node: ast.AST, in_function: bool, type_only: bool) -> None:
        if isinstance(node, ast.ImportFrom):
            name = target(node)
            if name == "flowdl" or name.startswith("flowdl."):
                names = [f"{name}.{a.name}" for a in node.names]
                known = [n for n in names if n in MODULES] or [name]
                out.extend((n, in_function, type_only) for n in known)
        elif isinstance(node, ast.Import):
            out.extend(
                (a.name, in_function, type_only) for a in node.names if a.name.startswith("flowdl")
            )
        for child in ast.iter_child_nodes(node):
            visit(
                child,
                in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)),
                type_only
                or (isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)),
            )

    visit(tree, False, False)
    return out


MODULES = modules()


def test_every_module_is_on_a_floor_named_in_the_document() -> None:
    text = DOC.read_text()
    for name, prefixes in FLOORS:
        assert name in text.lower(), f"the floor {name!r} is not described"
        for prefix in prefixes:
            shown = prefix.removeprefix("flowdl.").replace(".", "/")
            assert shown in text, f"{prefix} is not placed in docs/architecture.md"
    for module in MODULES:
        floor_of(module)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_down_the_floors(module: str) -> None:
    here = floor_of(module)
    up = [
        f"{name} ({FLOORS[floor_of(name)][0]})"
        for name, in_function, type_only in imported(module, MODULES[module])
        if not type_only and floor_of(name) > here and (module, name) not in LAZY_IMPORTS
    ]
    assert not up, f"{module} ({FLOORS[here][0]}) imports from a higher floor: {up}"


def test_flowdl_modules_are_imported_at_module_level() -> None:
    inside = {
        (module, name)
        for module, path in MODULES.items()
        for name, in_function, _ in imported(module, path)
        if in_function
    }
    assert inside == LAZY_IMPORTS, inside ^ LAZY_IMPORTS
    text = DOC.read_text()
    for _, name in LAZY_IMPORTS:
        assert name.removeprefix("flowdl.").replace(".", "/") in text, f"{name} not documented"


def test_nothing_below_the_roof_imports_the_graph() -> None:
    roof = floor_of("flowdl._graph")
    below = [
        module
        for module, path in MODULES.items()
        if floor_of(module) < roof
        and any(name.startswith("flowdl._graph") for name, *_ in imported(module, path))
    ]
    assert not below, below


def test_no_file_switches_off_mypy_or_grows_past_450_lines() -> None:
    for module, path in MODULES.items():
        text = path.read_text()
        assert "# mypy: disable-error-code" not in text, module
        assert text.count("\n") <= 450, f"{module} has {text.count(chr(10))} lines"


def test_the_step_dispatch_is_written_in_one_file() -> None:
    dispatching = sorted(
        str(path.relative_to(PACKAGE))
        for path in MODULES.values()
        if "vals[out] = fn(vals[a])" in path.read_text()
    )
    assert dispatching == ["_executor/steps.py"]


def test_import_flowdl_loads_no_server_psutil_or_rich() -> None:
    code = (
        "import sys, flowdl\n"
        "print(sorted(m for m in ('http.server', 'socketserver', 'psutil', 'rich')"
        " if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip() == "[]", done.stdout
