"""`plot_html` and `plot_timings_html`: the graph's histories as offline curves pages."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import flowdl as fl
from flowdl._web.assets import palette
from tests.browser import PageWatch, colour_pixels


def embedded(page: str) -> Any:
    found = re.search(
        r'<script type="application/json" id="flowdl-data">(.*?)</script>', page, re.S
    )
    assert found is not None
    return json.loads(found.group(1))


def assert_offline(page: str) -> None:
    """No script, style sheet or other resource comes from the network."""
    remote = r"<(script|link|img|iframe)\b[^>]*\b(src|href)\s*=\s*[\"']?\s*(https?:)?//"
    assert re.search(remote, page, re.I) is None
    assert re.search(r"<script\b[^>]*\ssrc\s*=", page, re.I) is None  # every script inline
    assert "default-src 'none'" in page  # and the page's policy forbids loading anything


def trained() -> fl.Graph:
    """Three epochs of a loss, a tag group and a nested graph's tag."""
    encoder = fl.Flow(nn.Linear(2, 4)).tag("hidden").label("encoder").build()
    g = (
        fl.Flow(encoder)
        .split(nn.Linear(4, 1), nn.Linear(4, 1))
        .tag_group("head")
        .merge(fl.Add())
        .build()
    )
    for epoch in range(3):
        for step in range(2):
            g(torch.full((3, 2), float(epoch + step)))
            g.collect("head")
            g.collect_at("encoder.hidden")
            g.record("loss", 1.0 / (epoch + 1) + 0.125 * step)
        g.flush()
    return g


def test_training_curves_page_holds_every_history(tmp_path: Path) -> None:
    g = trained()
    out = g.plot_html(tmp_path / "curves.html")
    page = out.read_text()
    assert "<title>Training Curves</title>" in page
    assert "<h1>Training Curves</h1>" in page
    assert_offline(page)
    data = embedded(page)
    names = [s["name"] for s in data["series"]]
    assert names == ["encoder.hidden", "head_0", "head_1", "loss"]  # every history, sorted
    for series in data["series"]:
        assert series["values"] == list(g.trends(series["name"])[series["name"]].values)
    assert data["series"][3]["values"] == [1.0625, 0.5625, 1 / 3 + 0.0625]
    assert data["x_title"] == "Epoch"
    assert "4 series, 3 epochs" in page


def test_named_series_in_order_with_groups_expanded(tmp_path: Path) -> None:
    g = trained()
    page = g.plot_html(tmp_path / "some.html", "loss", "head", "missing").read_text()
    assert [s["name"] for s in embedded(page)["series"]] == ["loss", "head_0", "head_1"]


def test_no_history_is_an_error_saying_to_flush(tmp_path: Path) -> None:
    g = fl.Flow(nn.Linear(2, 2)).tag("hidden").build()
    g.record("loss", 1.0)  # buffered, not flushed
    with pytest.raises(ValueError, match=r"no epoch data to plot \(call flush\(\) first\)"):
        g.plot_html(tmp_path / "curves.html")
    with pytest.raises(ValueError, match=r"no epoch data to plot for 'nope'"):
        trained().plot_html(tmp_path / "curves.html", "nope")
    assert list(tmp_path.iterdir()) == []  # nothing written, not even half a file


def test_timing_trends_page(tmp_path: Path) -> None:
    g = trained()
    g.enable_profiling()
    g.subgraph("encoder").enable_profiling()
    for _ in range(2):
        g(torch.randn(3, 2))
        g.collect_timings()
        g.flush_timings()
    page = g.plot_timings_html(tmp_path / "timings.html").read_text()
    assert "<title>Timing Trends</title>" in page
    assert "Training Curves" not in page
    assert_offline(page)
    data = embedded(page)
    assert [s["name"] for s in data["series"]] == ["encoder.hidden", "head_0", "head_1"]
    for series in data["series"]:
        assert series["values"] == list(g.timing_trend(series["name"]).values)
        assert all(v > 0 for v in series["values"])
    assert data["y_title"] == "seconds"
    grouped = g.plot_timings_html(tmp_path / "head.html", "head").read_text()
    assert [s["name"] for s in embedded(grouped)["series"]] == ["head_0", "head_1"]


def test_no_timing_history_is_an_error_saying_to_flush_timings(tmp_path: Path) -> None:
    g = trained()  # value histories only
    with pytest.raises(ValueError, match=r"no timing data to plot .*flush_timings\(\) first"):
        g.plot_timings_html(tmp_path / "timings.html")
    assert list(tmp_path.iterdir()) == []


def test_the_training_curves_page_draws_from_a_file_in_chromium(
    browser: Any, tmp_path: Path
) -> None:
    g = trained()
    out = g.plot_html(tmp_path / "curves.html", "loss", "head")
    watch = PageWatch(browser, width=1100, height=800)
    try:
        watch.page.goto(out.as_uri())
        watch.page.wait_for_function("() => window.flowdlCurves && window.flowdlCurves.ready")
        drawn = watch.page.evaluate(
            """() => [...document.querySelectorAll('#curves .chart')]
                .map(e => e.flowdlChart.series[0]).map(t => [t.name, t.x, t.y])"""
        )
        assert drawn == [
            [name, [1, 2, 3], list(g.trends(name)[name].values)]
            for name in ("loss", "head_0", "head_1")
        ]
        charts = watch.page.locator("#curves .chart svg")
        for index, colour in enumerate(palette(3)[:3]):
            png = bytes(charts.nth(index).screenshot())
            assert colour_pixels(png, colour.lower()) > 100, f"no line drawn in {colour}"
        assert watch.requests == [out.as_uri()]  # nothing but the file itself
        assert watch.errors == []
    finally:
        watch.close()


def test_marks_are_noted_drawn_and_not_copied(tmp_path: Path) -> None:
    fresh = fl.Flow(nn.Identity()).build()
    with pytest.raises(ValueError, match="nothing flushed yet"):
        fresh.mark("too early")
    g = trained()
    g.mark("loss stalled: lr / 2")  # at the last flushed epoch
    g.mark("warm-up over", epoch=1)
    assert g.marks == [(3, "loss stalled: lr / 2"), (1, "warm-up over")]
    with pytest.raises(ValueError, match="int epoch >= 1"):
        g.mark("x", epoch=0)
    page = g.plot_html(tmp_path / "curves.html", "loss").read_text()
    assert embedded(page)["marks"] == [
        {"epoch": 3, "text": "loss stalled: lr / 2"},
        {"epoch": 1, "text": "warm-up over"},
    ]
    chosen = g.plot_html(tmp_path / "other.html", "loss", marks=[(2, "other")]).read_text()
    assert embedded(chosen)["marks"] == [{"epoch": 2, "text": "other"}]
    assert copy.deepcopy(g).marks == []  # not part of the model
    assert "_marks" not in g.state_dict()
