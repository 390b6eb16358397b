"""The offline curves page: its data, its checks, escaping, and its drawing in Chromium."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from flowdl._web.assets import palette, script_json
from flowdl._web.curves import curves_page, write_curves_page
from tests.browser import PageWatch, colour_pixels

HOSTILE = '</script><img src=x onerror="window.pwned=1"><b>bold</b>'


def embedded(page: str) -> Any:
    found = re.search(
        r'<script type="application/json" id="flowdl-data">(.*?)</script>', page, re.S
    )
    assert found is not None
    return json.loads(found.group(1))


def test_page_embeds_each_series_with_its_text() -> None:
    page = curves_page({"loss": [1.0, 0.5, None, float("nan")], "lr": [1e-3, 1e-4]}, "Curves")
    data = embedded(page)
    assert [s["name"] for s in data["series"]] == ["loss", "lr"]
    assert data["series"][0]["values"] == [1.0, 0.5, None, None]
    assert data["series"][0]["text"] == ["1.0000", "0.5000", "", "nan"]
    assert data["series"][1]["text"] == ["0.0010", "1.00e-04"]
    assert data["x_title"] == "Epoch"
    assert "2 series, 4 epochs" in page
    assert "<td>loss</td><td>4</td><td>nan</td><td>0.5000</td><td>1.0000</td>" in page


def test_page_loads_nothing() -> None:
    page = curves_page({"loss": [1.0]}, "Curves")
    assert "default-src 'none'" in page
    assert re.search(r"<script[^>]+src=", page) is None
    assert "<link" not in page


def test_hostile_names_and_titles_are_escaped() -> None:
    page = curves_page({HOSTILE: [1.0, 2.0]}, HOSTILE, y_title=HOSTILE)
    assert "<img src=x" not in page
    assert page.count("</script>") == page.count("<script")  # nothing closes a script early
    assert embedded(page)["series"][0]["name"] == HOSTILE
    assert embedded(page)["y_title"] == HOSTILE


def test_script_json_escapes_what_could_end_a_script() -> None:
    text = script_json({"a": "</script>&\u2028"})
    assert "<" not in text
    assert ">" not in text
    assert "&" not in text
    assert "\u2028" not in text
    assert json.loads(text) == {"a": "</script>&\u2028"}
    with pytest.raises(ValueError, match="JSON"):
        script_json({"a": float("nan")})


@pytest.mark.parametrize(
    ("series", "error", "words"),
    [
        ([1.0, 2.0], TypeError, "needs named series"),
        ({}, ValueError, "no series to draw"),
        ({"loss": "1,2"}, TypeError, "'loss' must be a sequence of numbers"),
        ({"loss": [1.0, "x"]}, TypeError, "'loss', epoch 2: expected a number"),
        ({"loss": [True]}, TypeError, "'loss', epoch 1"),
        ({3: [1.0]}, TypeError, "series names are strings"),
    ],
)
def test_bad_series_are_explained(series: Any, error: type[Exception], words: str) -> None:
    with pytest.raises(error, match=re.escape(words)):
        curves_page(series, "Curves")


def test_many_series_get_distinct_colours() -> None:
    assert len(set(palette(24))) == 24
    data = embedded(curves_page({f"s{i}": [float(i)] for i in range(20)}, "Many"))
    assert len(set(data["palette"])) == 24


def test_write_is_atomic_and_complete(tmp_path: Path) -> None:
    out = write_curves_page(tmp_path / "curves.html", {"loss": [1.0, 0.5]}, "Training Curves")
    assert out.read_text().endswith("</html>\n")
    assert [p.name for p in tmp_path.iterdir()] == ["curves.html"]


def chart_state(page: Any) -> Any:
    return page.evaluate(
        """() => [...document.querySelectorAll('#curves .curve')].map(box => {
            const chart = box.querySelector('.chart').flowdlChart;
            return {name: box.getAttribute('data-series'),
                    title: box.querySelector('h3').textContent,
                    x: chart.series[0].x, y: chart.series[0].y, text: chart.series[0].text,
                    scale: box.querySelector('svg').getAttribute('data-scale'),
                    axes: box.querySelectorAll('svg .y-axis').length,
                    lines: box.querySelectorAll('svg path.line').length,
                    range: chart.scale.xs};
        })"""
    )


def test_marks_are_checked() -> None:
    data = embedded(curves_page({"loss": [1.0, 0.5]}, "Curves", marks=[(2, "lr / 2")]))
    assert data["marks"] == [{"epoch": 2, "text": "lr / 2"}]
    with pytest.raises(TypeError, match="int epoch >= 1"):
        curves_page({"loss": [1.0]}, "Curves", marks=[(0, "x")])
    with pytest.raises(TypeError, match="epoch, text"):
        curves_page({"loss": [1.0]}, "Curves", marks="lr / 2")  # type: ignore[arg-type]


def test_page_is_small() -> None:
    epochs = 1000
    series = {f"metric_{i}": [1.0 / (e + 1) for e in range(epochs)] for i in range(10)}
    assert len(curves_page(series, "Curves").encode("utf-8")) <= 1_000_000


def test_curves_page_draws_offline_in_chromium(browser: Any, tmp_path: Path) -> None:
    series = {
        "loss": [1.0, 0.6, 0.4, 0.3, 0.25],
        "accuracy": [0.2, 0.5, None, 0.8, 0.9],
        "grad_norm": [50.0, 52.0, 48.0, 51.0, 49.0],
        HOSTILE: [0.1, 0.1, 0.1],
    }
    out = write_curves_page(
        tmp_path / "curves.html", series, "Training Curves", marks=[(3, "loss stalled")]
    )
    assert out.stat().st_size <= 1_000_000
    watch = PageWatch(browser, width=1100, height=1400)
    try:
        watch.page.goto(out.as_uri())
        watch.page.wait_for_function("() => window.flowdlCurves && window.flowdlCurves.ready")
        charts = chart_state(watch.page)
        assert [c["name"] for c in charts] == list(series)  # one chart per series
        assert [c["title"] for c in charts] == list(series)  # the hostile name, as text
        assert all(c["axes"] == 1 and c["lines"] == 1 for c in charts)  # its own axis
        assert charts[0]["x"] == [1, 2, 3, 4, 5]
        assert charts[0]["y"] == [1.0, 0.6, 0.4, 0.3, 0.25]
        assert charts[0]["text"] == ["1.0000", "0.6000", "0.4000", "0.3000", "0.2500"]
        assert charts[1]["y"] == [0.2, 0.5, None, 0.8, 0.9]
        assert [c["scale"] for c in charts] == ["log", "linear", "linear", "linear"]
        assert watch.page.evaluate("() => window.pwned") is None
        # the grad norm of ~50 has its own axis: accuracy's ticks stay below 1.1
        ticks = watch.page.evaluate(
            """() => [...document.querySelectorAll('#curves .curve')[1]
                .querySelectorAll('.y-axis .tick')].map(t => Number(t.textContent))"""
        )
        assert ticks
        assert max(ticks) <= 1.1, ticks
        png = bytes(watch.page.locator("#curves .curve svg").first.screenshot())
        assert colour_pixels(png, palette(4)[0]) > 100, "no loss line drawn"
        # the log toggle switches the loss chart to a linear axis and back
        toggle = watch.page.locator("#curves .curve").first.locator("label.scale input")
        toggle.click()
        assert chart_state(watch.page)[0]["scale"] == "linear"
        toggle.click()
        assert chart_state(watch.page)[0]["scale"] == "log"
        # hover: the epoch and the value under the pointer, and the mark at epoch 3
        svg = watch.page.locator("#curves .curve").first.locator("svg")
        box = svg.bounding_box()
        assert box is not None
        x3 = watch.page.evaluate(
            "() => document.querySelector('#curves .chart').flowdlChart.scale.X(3)"
        )
        watch.page.mouse.move(box["x"] + x3, box["y"] + box["height"] / 2)
        tip = watch.page.locator("#curves .curve").first.locator(".chart-tip")
        assert tip.is_visible()
        assert tip.inner_text().splitlines() == ["epoch 3", "loss: 0.4000", "▲ loss stalled"]
        assert watch.page.locator("#curves .curve").first.locator("svg .mark").count() == 1
        # zoom: drag from epoch 2 to epoch 4; every chart follows
        x2, x4 = watch.page.evaluate(
            "() => [2, 4].map(e => document.querySelector('#curves .chart').flowdlChart.scale.X(e))"
        )
        watch.page.mouse.move(box["x"] + x2, box["y"] + 60)
        watch.page.mouse.down()
        watch.page.mouse.move(box["x"] + x4, box["y"] + 60, steps=4)
        watch.page.mouse.up()
        ranges = [c["range"] for c in chart_state(watch.page)]
        assert all(r == ranges[0] for r in ranges)
        assert ranges[0][0] == pytest.approx(2, abs=0.05)
        assert ranges[0][1] == pytest.approx(4, abs=0.05)
        watch.page.locator("#curves .curve").first.locator("button.range", has_text="all").click()
        assert chart_state(watch.page)[0]["range"] == [0.5, 5.5]
        assert watch.requests == [out.as_uri()]
        assert watch.errors == []
    finally:
        watch.close()
