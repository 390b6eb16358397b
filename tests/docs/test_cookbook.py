"""The cookbook: every recipe is drawn, listed and linked; the drawing script works.

The recipes' code runs as doctests (``pytest docs/cookbook``); this checks what the
doctests do not: each page shows its drawing, the drawing is committed, the site's
navigation and the cookbook's index list the page, and ``examples/draw_cookbook.py``
redraws a recipe from its page.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COOKBOOK = ROOT / "docs" / "cookbook"
RECIPES = sorted(page for page in COOKBOOK.glob("*.md") if page.stem != "index")


def draw_cookbook() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "draw_cookbook", ROOT / "examples" / "draw_cookbook.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def nav_pages() -> list[str]:
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)

    def walk(entry: object) -> list[str]:
        if isinstance(entry, str):
            return [entry]
        if isinstance(entry, dict):
            return [page for value in entry.values() for page in walk(value)]
        if isinstance(entry, list):
            return [page for item in entry for page in walk(item)]
        return []

    return walk(config["nav"])


def test_the_six_recipes_are_there() -> None:
    assert [page.stem for page in RECIPES] == [
        "adaptive-computation-time",
        "early-exit",
        "mixture-of-experts",
        "multi-head",
        "recurrent-cell",
        "refinement-with-deadline",
    ]


@pytest.mark.parametrize("page", RECIPES, ids=lambda page: page.stem)
def test_each_recipe_shows_its_committed_drawing_and_runs_code(page: Path) -> None:
    text = page.read_text()
    assert f"]({page.stem}.svg)" in text
    drawing = (COOKBOOK / f"{page.stem}.svg").read_text()
    assert drawing.lstrip().startswith("<?xml")
    assert "<svg" in drawing
    assert text.count(">>> ") >= 5  # the recipe is code that runs, not prose
    assert f"cookbook/{page.name}" in nav_pages()
    assert f"]({page.name})" in (COOKBOOK / "index.md").read_text()


def test_the_drawing_script_redraws_a_recipe(tmp_path: Path) -> None:
    script = draw_cookbook()
    graph = script.run_recipe(COOKBOOK / "recurrent-cell.md")
    assert graph.tags == ("h",)
    svg = graph.svg(tmp_path / "recurrent-cell.svg")
    assert "<svg" in svg
    assert "#h" in svg
    assert (tmp_path / "recurrent-cell.svg").read_text() == svg


def test_the_drawing_script_names_a_recipe_without_a_graph(tmp_path: Path) -> None:
    page = tmp_path / "no-graph.md"
    page.write_text(">>> x = 1\n")
    with pytest.raises(ValueError, match="defines no graph named g"):
        draw_cookbook().run_recipe(page)
