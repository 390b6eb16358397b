"""The dashboard in real headless Chromium: the live page draws epochs logged after it
connected; the frozen page of save_html draws offline; user strings stay text."""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

import flowdl as fl
from tests.browser import PageWatch, colour_pixels

HOSTILE = '<img src=x onerror="window.pwned=1">'
FIRST_COLOUR = "#2563eb"  # the first metric's line (flowdl's first colour)


class Drawn:
    label = "demo"

    def svg(self) -> str:
        return (
            '<svg xmlns="http://www.w3.org/2000/svg" width="240" height="60">'
            '<rect width="240" height="60" fill="#b3d4ff"/><text x="10" y="35">Linear</text></svg>'
        )


def chart_data(page: Any, metric: str) -> Any:
    return page.evaluate(
        """(metric) => {
            const box = [...document.querySelectorAll('.metric-chart')]
                .find(e => e.getAttribute('data-metric') === metric);
            if (!box) return null;
            const plot = box.querySelector('.chart');
            const chart = plot.flowdlChart;
            return {x: chart.series[0].x, y: chart.series[0].y,
                    title: box.querySelector('h3').textContent,
                    scale: plot.querySelector('svg').getAttribute('data-scale'),
                    path: (plot.querySelector('svg path.line') || {}).outerHTML || ''};
        }""",
        metric,
    )


def test_live_page_draws_epochs_logged_after_it_connected(browser: Any) -> None:
    monitor = fl.Monitor(6, output=io.StringIO(), title="live run")
    watch = PageWatch(browser)
    try:
        monitor.watch(Drawn())
        url = monitor.serve()
        monitor.log(1, {"loss": 1.0, HOSTILE: 0.5})
        watch.page.goto(url)
        watch.page.wait_for_function(
            "() => window.flowdlDashboard && window.flowdlDashboard.connection === 'live'"
            " && window.flowdlDashboard.epochs.size === 1"
        )
        for epoch in (2, 3, 4):
            monitor.log(epoch, {"loss": 1.0 / epoch, HOSTILE: 0.5})
        watch.page.wait_for_function(
            "() => window.flowdlDashboard.epochs.size === 4 && window.flowdlDashboard.renders > 0"
            " && document.querySelector('[data-metric=loss] .chart').flowdlChart.series[0].x.length"
            " === 4"
        )
        loss = chart_data(watch.page, "loss")
        assert loss["x"] == [1, 2, 3, 4]
        assert loss["y"] == pytest.approx([1.0, 0.5, 1 / 3, 0.25])
        assert loss["path"].count("L") >= 3  # a line through the four points
        assert loss["scale"] == "log"  # losses start on a log scale
        png = bytes(watch.page.locator("[data-metric=loss] .chart svg").screenshot())
        pixels = colour_pixels(png, FIRST_COLOUR)
        assert pixels > 100, f"only {pixels} pixels of the loss line in the plot area"
        assert watch.page.inner_text("#epoch-count") == "4/6"
        assert watch.page.inner_text("#status") == "live"
        hostile = chart_data(watch.page, HOSTILE)
        assert hostile["title"] == HOSTILE  # shown as text
        assert watch.page.evaluate("() => window.pwned") is None
        assert watch.page.locator("#graph-panel .graph-view svg text").text_content() == "Linear"
        assert "CPU" in watch.page.inner_text("#resource-now")
        monitor.finish()
        watch.page.wait_for_function("() => window.flowdlDashboard.finish !== null")
        watch.page.wait_for_function(
            "() => document.getElementById('status').textContent === 'finished'"
        )
        assert watch.page.inner_text("#summary").startswith("done: 4/6 epochs in ")
        origin = url.rstrip("/")
        assert all(request.startswith(origin) for request in watch.requests), watch.requests
        assert watch.errors == []
    finally:
        monitor.finish()
        watch.close()


def test_saved_page_draws_offline(
    browser: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # as on a CUDA machine: the GPU memory figures join the resources
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda: 2**30)
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda: 3 * 2**30)
    monitor = fl.Monitor(5, output=io.StringIO(), title="saved run")
    for epoch in range(1, 6):
        monitor.log(epoch, {"loss": 2.0 / epoch, "accuracy": epoch / 5})
    monitor.finish()
    saved = monitor.save_html(tmp_path / "run.html")
    assert saved.stat().st_size <= 1_000_000
    text = saved.read_text()
    assert "http://" not in text.split("<script>", 1)[0]  # nothing to load in the head
    watch = PageWatch(browser)
    try:
        watch.page.goto(saved.as_uri())
        watch.page.wait_for_function(
            "() => window.flowdlDashboard && window.flowdlDashboard.renders > 0"
        )
        accuracy = chart_data(watch.page, "accuracy")
        assert accuracy["x"] == [1, 2, 3, 4, 5]
        assert accuracy["y"] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
        assert accuracy["scale"] == "linear"
        png = bytes(watch.page.locator("[data-metric=loss] .chart svg").screenshot())
        pixels = colour_pixels(png, FIRST_COLOUR)
        assert pixels > 100, f"only {pixels} pixels of the loss line in the plot area"
        assert watch.page.inner_text("#status").startswith("snapshot of ")
        assert watch.page.inner_text("#eta") == "done"
        memory = watch.page.evaluate(
            "() => document.getElementById('resource-memory').flowdlChart.series"
            ".map(t => [t.name, t.y[0]])"
        )
        assert memory[1:] == [["GPU allocated", 1.0], ["GPU reserved", 3.0]]  # GiB
        assert "GPU reserved 3.0 GiB" in watch.page.inner_text("#resource-now")
        assert watch.requests == [saved.as_uri()]  # offline: the page loads nothing else
        assert watch.errors == []
    finally:
        watch.close()


HOSTILE_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
    'width="100" height="40" onload="window.pwned=1"><script>window.pwned=2</script>'
    '<g class="node"><title>n</title><a xlink:href="javascript:window.pwned=3" xlink:title="n: X">'
    '<rect width="90" height="30" fill="#fff" onmouseover="window.pwned=4"/><text>n</text></a></g>'
    '<foreignObject><div xmlns="http://www.w3.org/1999/xhtml">html</div></foreignObject></svg>'
)


class Hostile:
    label = "hostile"

    def svg(self) -> str:
        return HOSTILE_SVG


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed")
def test_graph_panel_is_the_svg_with_zoom_and_node_tooltips(browser: Any, tmp_path: Path) -> None:
    graph = (
        fl.Flow(torch.nn.Linear(2, 8)).tag("embed").through(torch.nn.GELU()).label("net").build()
    )
    graph.enable_profiling()
    graph(torch.randn(4, 2))
    monitor = fl.Monitor(2, output=io.StringIO(), title="graph run")
    monitor.watch(graph, profile=True)  # while the profile is there
    graph.disable_profiling()
    monitor.log(1, {"loss": 1.0})
    monitor.finish()
    saved = monitor.save_html(tmp_path / "run.html")
    watch = PageWatch(browser)
    try:
        watch.page.goto(saved.as_uri())
        watch.page.wait_for_selector("#graph-panel .graph-view svg g.node")
        node = watch.page.locator("#graph-panel g.node", has_text="Linear_0")
        node.scroll_into_view_if_needed()
        box = node.bounding_box()
        assert box is not None
        watch.page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        tip = watch.page.locator("#graph-panel .graph-tip")
        assert tip.is_visible()
        lines = tip.inner_text().splitlines()
        assert lines[0] == "Linear_0: Linear(in_features=2, out_features=8, bias=True)"
        assert "24 params" in lines
        assert "#embed" in lines
        assert "output shape: (4, 8)" in lines
        assert any(line.startswith("time: ") for line in lines), lines
        before = watch.page.evaluate(
            "() => document.getElementById('graph-panel').flowdlGraph.scale"
        )
        watch.page.mouse.wheel(0, -300)
        after = watch.page.evaluate(
            "() => document.getElementById('graph-panel').flowdlGraph.scale"
        )
        assert after > before  # the wheel zooms in
        transform = watch.page.evaluate(
            "() => document.querySelector('#graph-panel .graph-view svg').style.transform"
        )
        watch.page.mouse.move(box["x"] + 5, box["y"] + 5)
        watch.page.mouse.down()
        watch.page.mouse.move(box["x"] + 80, box["y"] + 60, steps=4)
        watch.page.mouse.up()
        moved = watch.page.evaluate(
            "() => document.querySelector('#graph-panel .graph-view svg').style.transform"
        )
        assert moved != transform  # dragging pans
        assert watch.requests == [saved.as_uri()]
        assert watch.errors == []
    finally:
        watch.close()


def test_the_drawing_is_sanitised(browser: Any, tmp_path: Path) -> None:
    monitor = fl.Monitor(1, output=io.StringIO(), resources=False)
    monitor.watch(Hostile())
    monitor.finish()
    saved = monitor.save_html(tmp_path / "run.html")
    watch = PageWatch(browser)
    try:
        watch.page.goto(saved.as_uri())
        watch.page.wait_for_selector("#graph-panel .graph-view svg")
        panel = watch.page.inner_html("#graph-panel .graph-view")
        for gone in ("onload", "onmouseover", "<script", "javascript:", "foreignObject", "<a"):
            assert gone not in panel, gone
        watch.page.locator("#graph-panel rect").first.hover()
        assert watch.page.text_content("#graph-panel .graph-tip") == "n: X"
        assert watch.page.evaluate("() => window.pwned") is None
        assert watch.errors == []
    finally:
        watch.close()
