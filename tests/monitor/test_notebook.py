"""Notebooks, in a real Jupyter kernel (nbclient): a graph draws itself as SVG, a summary
is an HTML table, and fl.Monitor shows one live output (chart and line) it updates."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

CELLS = [
    "import torch, flowdl as fl\n"
    "g = fl.Flow(torch.nn.Linear(2, 8)).tag('embed').through(torch.nn.GELU()).build()\n"
    "g",
    "g.summary()",
    "monitor = fl.Monitor(3, resources=False, title='notebook <run>')\n"
    "for epoch in range(1, 4):\n"
    "    monitor.log(epoch, {'loss': 1.0 / epoch, 'accuracy': epoch / 4})\n"
    "monitor.finish()",
]


def executed(tmp_path: Path) -> Any:
    """The notebook of CELLS, run top to bottom in a fresh python3 kernel."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in CELLS]
    client = nbclient.NotebookClient(
        notebook, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    )
    client.execute()
    nbformat.write(notebook, tmp_path / "run.ipynb")
    return notebook


def test_graph_summary_and_monitor_render_in_a_kernel(tmp_path: Path) -> None:
    notebook = executed(tmp_path)
    graph, summary, monitor = (cell.outputs for cell in notebook.cells)

    (drawn,) = graph
    assert drawn["output_type"] == "execute_result"
    if shutil.which("dot") is not None:
        assert drawn["data"]["image/svg+xml"].lstrip().startswith(("<?xml", "<svg"))
        assert "Linear_0" in drawn["data"]["image/svg+xml"]
    else:  # without Graphviz, the text repr
        assert "image/svg+xml" not in drawn["data"]
    assert "text/plain" in drawn["data"]

    (table,) = summary
    html = table["data"]["text/html"]
    assert html.startswith('<table class="flowdl-summary">')
    assert '<td style="text-align:left">Linear_0</td>' in html
    assert '<td style="text-align:left">embed</td>' in html

    views = [
        out
        for out in monitor
        if out["output_type"] == "display_data" and "flowdl-monitor" in out["data"]["text/html"]
    ]
    assert len(views) == 1  # one output, updated in place at each log and at finish
    page = views[0]["data"]["text/html"]
    assert "notebook &lt;run&gt;" in page  # the title, escaped
    assert "done: 3/3 epochs in " in page
    assert page.count('class="panel"') == 2  # one chart per metric
    assert 'data-metric="loss" data-scale="log"' in page
    assert "epoch 3: 0.3333" in page
    assert views[0]["data"]["text/plain"].startswith("done: 3/3 epochs")
    # the epoch lines are in the live view, not printed again under it
    others = [out for out in monitor if out not in views]
    assert others == [], others
