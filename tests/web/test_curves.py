"""The offline curves page: its data, its checks, escaping, and its drawing in Chromium."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from flowdl._web.assets import palette, script_json
from flowdl._web.curves import curves_page, write_curves_page
from tests.browser import PageWatch, colour_pixels, plot_area_png

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


def test_curves_page_draws_offline_in_chromium(browser: Any, tmp_path: Path) -> None:
    series = {
        "loss": [1.0, 0.6, 0.4, 0.3, 0.25],
        "accuracy": [0.2, 0.5, None, 0.8, 0.9],
        HOSTILE: [0.1, 0.1, 0.1],
    }
    out = write_curves_page(tmp_path / "curves.html", series, "Training Curves")
    watch = PageWatch(browser, width=1100, height=800)
    try:
        watch.page.goto(out.as_uri())
        watch.page.wait_for_function("() => document.getElementById('curves').data !== undefined")
        drawn = watch.page.evaluate(
            "() => document.getElementById('curves').data.map(t => [t.x, t.y, t.customdata])"
        )
        assert drawn[0] == [
            [1, 2, 3, 4, 5],
            [1.0, 0.6, 0.4, 0.3, 0.25],
            ["1.0000", "0.6000", "0.4000", "0.3000", "0.2500"],
        ]
        assert drawn[1][1] == [0.2, 0.5, None, 0.8, 0.9]
        assert drawn[2][0] == [1, 2, 3]
        axis = watch.page.evaluate(
            "() => document.getElementById('curves').layout.xaxis.title.text"
        )
        assert axis == "Epoch"
        legend = watch.page.evaluate(
            "() => [...document.querySelectorAll('#curves .legendtext')].map(e => e.textContent)"
        )
        assert legend == ["loss", "accuracy", HOSTILE]  # the hostile name, as text
        assert watch.page.evaluate("() => window.pwned") is None
        png = plot_area_png(watch.page, "#curves")
        colours = palette(3)
        for colour in colours[:3]:
            assert colour_pixels(png, colour.lower()) > 100, f"no line in {colour}"
        box = watch.page.locator("#curves .nsewdrag").bounding_box()
        assert box is not None
        x_of_epoch_2 = watch.page.evaluate(
            "() => document.getElementById('curves')._fullLayout.xaxis.l2p(2)"
        )
        watch.page.mouse.move(box["x"] + x_of_epoch_2, box["y"] + box["height"] / 2)
        watch.page.wait_for_selector("#curves .hoverlayer .hoverlabel, #curves .hoverlayer .legend")
        hover = watch.page.evaluate(
            "() => document.querySelector('#curves .hoverlayer').textContent"
        )
        assert "loss: 0.6000" in hover, hover
        assert "accuracy: 0.5000" in hover, hover
        assert watch.requests == [out.as_uri()]
        assert watch.errors == []
    finally:
        watch.close()
