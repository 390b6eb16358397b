"""examples/dashboard_screenshot.py trains, serves and photographs a drawn dashboard."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.browser import chromium_path, colour_pixels

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "dashboard_screenshot.py"


def test_the_script_photographs_a_drawn_dashboard(tmp_path: Path) -> None:
    chromium = chromium_path()
    if chromium is None:
        pytest.skip("Chromium is not installed (apt-get install chromium) - browser tests skipped")
    out = tmp_path / "dashboard.png"
    options = ["--epochs", "3", "--samples", "256", "--out", str(out), "--chromium", chromium]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *options],
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("dashboard: http://127.0.0.1:")
    assert lines[1].startswith("epoch 1/3  loss=")
    assert lines[3].startswith("epoch 3/3  loss=")
    assert lines[3].endswith(", done]")
    assert lines[-1] == f"dashboard screenshot: {out}"
    picture = out.read_bytes()
    assert colour_pixels(picture, "#2563eb") > 200  # the first metric's line
    # The graph panel shows the model's drawing when Graphviz can draw it: the gate's
    # router is a large peach trapezoid (over 20,000 pixels), whole in the photograph.
    router = colour_pixels(picture, "#f5cba7", tolerance=12)
    if shutil.which("dot") is not None:
        assert router > 10_000
    else:
        assert router == 0  # the photograph stops above the graph panel
