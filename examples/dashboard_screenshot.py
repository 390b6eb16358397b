"""Train a small mixture of experts with the monitor's dashboard open, and photograph it.

Writes ``docs/dashboard.png`` (or ``--out``): a real run of 20 epochs on generated
data, watched in headless Chromium through `fl.Monitor.serve`, with the model's
drawing (`fl.Monitor.watch`, which shows ``graph.svg()``; needs Graphviz) in the
graph panel. Needs Playwright and a Chromium binary (``pip install -e ".[test]"``,
``apt-get install chromium``); no browser is downloaded.

    python examples/dashboard_screenshot.py [--out docs/dashboard.png] [--epochs 20]
                                            [--samples 4096] [--chromium PATH]

The model is a graph with a soft gate: a linear embedding, three experts weighted by
a softmax router, a linear head; it learns ``[a, b] -> [a * b, sin(pi * a)]``. The
loss charts start on a log scale; the graph panel is the drawing's SVG itself (pan,
zoom), and for the photograph the pointer rests on a node so its tooltip shows.
Without Graphviz the photograph stops above the graph panel.
"""

from __future__ import annotations

import argparse
import math
import shutil
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import flowdl as fl

ROOT = Path(__file__).resolve().parent.parent
WIDTH = 32


def expert() -> nn.Module:
    return nn.Sequential(nn.Linear(WIDTH, WIDTH), nn.GELU())


def model() -> fl.Graph:
    """Embedding, a gate of three experts (tagged), head."""
    return (
        fl.Flow(nn.Linear(2, WIDTH))
        .tag("features")
        .gate(fl.SoftmaxRouter(WIDTH, 3), expert(), expert(), expert())
        .tag("experts")
        .through(nn.Linear(WIDTH, 2))
        .label("moe")
        .build()
    )


def data(n: int, generator: torch.Generator) -> TensorDataset:
    x = torch.rand(n, 2, generator=generator) * 2 - 1
    return TensorDataset(x, torch.stack([x[:, 0] * x[:, 1], torch.sin(math.pi * x[:, 0])], dim=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "dashboard.png")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--samples", type=int, default=4096, help="training samples")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    torch.set_num_threads(1)  # the fastest for a model this small
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    train = DataLoader(
        data(args.samples, generator), batch_size=64, shuffle=True, generator=generator
    )
    valid = data(1024, generator)
    graph = model()
    optimizer = torch.optim.Adam(graph.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.epochs)

    monitor = fl.Monitor(args.epochs, title="flowdl: a gate of 3 experts, [a, b] -> [ab, sin(πa)]")
    monitor.watch(graph)
    url = monitor.serve()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=args.chromium,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)
        page.wait_for_function("() => window.flowdlDashboard.connection === 'live'")
        for epoch in range(1, args.epochs + 1):
            graph.train()
            total = 0.0
            for x, y in train:
                loss = nn.functional.mse_loss(graph(x), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += loss.item() * len(x)
            graph.eval()
            with torch.no_grad():
                val_loss = nn.functional.mse_loss(graph(valid.tensors[0]), valid.tensors[1])
            lr = schedule.get_last_lr()[0]
            schedule.step()
            monitor.log(epoch, {"loss": total / len(train.dataset), "val_loss": val_loss, "lr": lr})
        page.wait_for_function(f"() => window.flowdlDashboard.epochs.size === {args.epochs}")
        page.wait_for_timeout(800)  # let the charts settle (losses start on a log scale)
        drawn = page.locator("#graph-panel .graph-view svg").count() > 0
        if drawn:  # hover a node of the drawing: its tooltip is in the photograph
            node = page.locator("#graph-panel g.node").nth(3)
            node.scroll_into_view_if_needed()
            box = node.bounding_box()
            if box is not None:
                page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.wait_for_timeout(200)
        clip = None if drawn else page.locator("#resources-section").bounding_box()
        if clip is None:
            page.screenshot(path=str(args.out), full_page=True)
        else:
            page.screenshot(
                path=str(args.out),
                full_page=True,
                clip={"x": 0, "y": 0, "width": 1280, "height": clip["y"] + clip["height"] + 16},
            )
        browser.close()
    monitor.finish()
    print(f"dashboard screenshot: {args.out}")


if __name__ == "__main__":
    main()
