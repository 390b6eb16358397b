"""Run a small notebook in a real Jupyter kernel and photograph it as a reader sees it.

Writes ``docs/notebook.png`` (or ``--out``): a notebook built here (a graph drawn
inline, its summary as a table, a short training run under `fl.Monitor`, whose
display updates in place), executed top to bottom with nbclient, rendered to HTML
with nbconvert, and photographed in headless Chromium (Playwright with the system's
Chromium; nothing is downloaded). Needs ``pip install -e ".[test]"`` and
``apt-get install chromium graphviz``.

    python examples/notebook_screenshot.py [--out docs/notebook.png] [--chromium PATH]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbconvert import HTMLExporter

ROOT = Path(__file__).resolve().parent.parent

CELLS = [
    "import torch\nfrom torch import nn\nimport flowdl as fl\n\n"
    "torch.manual_seed(0)\n"
    "g = (fl.Flow(nn.Linear(2, 16)).tag('embed').through(nn.GELU())\n"
    "       .gate(fl.SoftmaxRouter(16, 2), nn.Linear(16, 16), nn.Linear(16, 16))\n"
    "       .through(nn.Linear(16, 1)).label('net').build())\n"
    "g",
    "g.summary()",
    "x = torch.rand(512, 2) * 2 - 1\ny = (x[:, :1] * x[:, 1:]).sin()\n"
    "optimizer = torch.optim.Adam(g.parameters(), lr=1e-2)\n"
    "monitor = fl.Monitor(12, title='a gate of two experts', resources=False)\n"
    "for epoch in range(1, 13):\n"
    "    loss = nn.functional.mse_loss(g(x), y)\n"
    "    optimizer.zero_grad(); loss.backward(); optimizer.step()\n"
    "    grad_norm = sum(p.grad.norm() ** 2 for p in g.parameters()) ** 0.5\n"
    "    monitor.log(epoch, {'loss': loss, 'grad_norm': grad_norm, 'lr': 1e-2})\n"
    "monitor.finish()",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "notebook.png")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in CELLS]
    NotebookClient(notebook, timeout=300, kernel_name="python3").execute()
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(notebook)
    with tempfile.TemporaryDirectory() as folder:
        page_file = Path(folder) / "notebook.html"
        page_file.write_text(body, encoding="utf-8")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=args.chromium,
                args=["--headless", "--no-sandbox", "--disable-gpu"],
            )
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            # offline: whatever the template would fetch (fonts, MathJax) is refused
            page.route("http*://**", lambda route: route.abort())
            page.goto(page_file.as_uri())
            page.wait_for_timeout(500)
            page.screenshot(path=str(args.out), full_page=True)
            browser.close()
    print(f"notebook screenshot: {args.out}")


if __name__ == "__main__":
    main()
