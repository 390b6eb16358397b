"""Draw the cookbook's graphs: run each recipe of docs/cookbook/ and save its ``g.svg``.

Each recipe page is a doctest whose graph is called ``g``; this script runs the page's
examples (as ``pytest docs/cookbook`` does, without checking their output) and renders
that graph with Graphviz next to the page, as ``<recipe>.svg``.

    python examples/draw_cookbook.py              # into docs/cookbook/
    python examples/draw_cookbook.py --out DIR    # elsewhere
"""

from __future__ import annotations

import argparse
import doctest
from pathlib import Path
from typing import Any

import flowdl as fl

COOKBOOK = Path(__file__).resolve().parent.parent / "docs" / "cookbook"


def recipes() -> list[Path]:
    """The recipe pages (every page of the cookbook but its index)."""
    return sorted(page for page in COOKBOOK.glob("*.md") if page.stem != "index")


def run_recipe(page: Path) -> fl.Graph:
    """Run the examples of ``page`` in one namespace and return its graph ``g``."""
    namespace: dict[str, Any] = {}
    for example in doctest.DocTestParser().get_examples(page.read_text()):
        code = compile(example.source, f"{page.name}:{example.lineno + 1}", "exec")
        if example.exc_msg is None:
            exec(code, namespace)
        else:  # an example that shows an error
            try:
                exec(code, namespace)
            except Exception:
                continue
            raise AssertionError(f"{page.name}:{example.lineno + 1}: the example raised nothing")
    graph = namespace.get("g")
    if not isinstance(graph, fl.Graph):
        raise ValueError(
            f"{page}: the recipe defines no graph named g (got {type(graph).__name__}); "
            "name the recipe's graph g so that it can be drawn"
        )
    return graph


def draw(out: Path) -> list[Path]:
    """Write one SVG per recipe into ``out``; return their paths."""
    written = []
    for page in recipes():
        path = out / f"{page.stem}.svg"
        run_recipe(page).svg(path)
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=COOKBOOK, help="folder for the SVGs")
    args = parser.parse_args()
    for path in draw(args.out):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
