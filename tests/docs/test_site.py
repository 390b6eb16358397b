"""The documentation site builds in strict mode and has an entry for every public name.

The site is built once per module (``mkdocs build --strict`` into a temporary folder,
offline: no plugin fetches anything). mkdocstrings writes the documented objects into
``objects.inv``; the names it must hold are computed here, at test time, from
``flowdl.__all__`` and the classes themselves, so a name or a method added later
without a reference entry fails this test.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sphobjinv

import flowdl as fl
from flowdl import data, protocols

ROOT = Path(__file__).resolve().parents[2]
# the classes whose every public method must have its own entry (issue 18)
CLASSES = (fl.Graph, fl.Flow, fl.Monitor, fl.Trend)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    command = ["mkdocs", "build", "--strict", "--quiet", "-f", "mkdocs.yml", "-d", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", *command],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=240,
    )
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    return out


@pytest.fixture(scope="module")
def documented(site: Path) -> set[str]:
    inventory = sphobjinv.Inventory(str(site / "objects.inv"))
    return {item.name for item in inventory.objects if item.domain == "py"}


def public_methods(cls: type) -> list[str]:
    """The public names that flowdl's classes in the MRO of ``cls`` define.

    Those of ``nn.Module``, ``Exception``, ``Dataset``... are PyTorch's and Python's.
    """
    own = [k for k in cls.__mro__ if k.__module__.split(".")[0] == "flowdl"]
    names = {name for k in own for name in vars(k) if not name.startswith("_")}
    return sorted(names)


def missing(expected: list[str], documented: set[str]) -> list[str]:
    return [name for name in expected if name not in documented]


HOW_TO_FIX = "add `::: <name>` to the page of docs/reference/ it belongs to"


def test_every_name_in_all_has_a_reference_entry(documented: set[str]) -> None:
    expected = [f"flowdl.{name}" for name in fl.__all__]
    assert len(expected) > 30
    assert missing(expected, documented) == [], HOW_TO_FIX


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
def test_every_public_method_has_a_reference_entry(cls: type, documented: set[str]) -> None:
    methods = public_methods(cls)
    assert methods, f"{cls.__name__} has no public method: the check would be empty"
    expected = [f"flowdl.{cls.__name__}.{name}" for name in methods]
    assert missing(expected, documented) == [], HOW_TO_FIX


@pytest.mark.parametrize("module", [data, protocols], ids=lambda module: module.__name__)
def test_every_name_of_the_submodules_has_a_reference_entry(
    module: object, documented: set[str]
) -> None:
    prefix = getattr(module, "__name__", "")
    expected = []
    for name in getattr(module, "__all__", []):
        expected.append(f"{prefix}.{name}")
        value = getattr(module, name)
        if inspect.isclass(value):
            expected += [f"{prefix}.{name}.{m}" for m in public_methods(value)]
    assert len(expected) >= 6
    assert missing(expected, documented) == [], HOW_TO_FIX


def test_doctests_render_as_code(site: Path) -> None:
    # docstrings head their doctests "Example:"; docs/_griffe_examples.py makes them
    # highlighted console sessions (as text, an output such as [1.0, 2.0] is a broken link)
    page = (site / "reference" / "observation" / "index.html").read_text()
    prompt = '<span class="gp">&gt;&gt;&gt; </span>'
    assert page.count(prompt) >= 10
    assert "t = fl.Trend([1.0, 0.8" not in page  # not left as plain text


def test_the_guides_are_chapters_of_the_site(site: Path) -> None:
    for guide in sorted((ROOT / "docs").glob("*.md")):
        assert (site / guide.stem / "index.html").is_file() or guide.stem == "index", guide.name
    assert (site / "index.html").is_file()


def test_the_readme_links_the_site_command_and_the_guides() -> None:
    readme = (ROOT / "README.md").read_text()
    assert 'pip install -e ".[docs]" && mkdocs build' in readme
    assert "mkdocs serve" in readme
    for guide in ("from-pytorch.md", "from-godl-flodl.md", "from-keras.md"):
        assert f"](docs/migrating/{guide})" in readme
        assert (ROOT / "docs" / "migrating" / guide).is_file()


def extra(name: str) -> set[str]:
    """The requirements of an optional-dependency list of pyproject.toml (one a line)."""
    text = (ROOT / "pyproject.toml").read_text()
    block = text.split(f"\n{name} = [\n", 1)[1].split("\n]", 1)[0]
    lines = [line.strip() for line in block.splitlines()]
    return {line.rstrip(",").strip('"') for line in lines if line and not line.startswith("#")}


def test_ci_installs_what_builds_the_site() -> None:
    # CI installs only the test extra, and tests/docs builds the site
    docs = extra("docs")
    assert "mkdocs>=1.6" in docs
    assert docs <= extra("test")
