"""``python -m flowdl``: the demo trains, decides from trends and writes its outputs."""

from __future__ import annotations

import io
import shutil
import statistics
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch

import flowdl as fl
from flowdl._cli import main
from flowdl._cli.demo import (
    CONVERGED_SPREAD,
    STALL_SLOPE,
    STALL_WINDOW,
    build_model,
    make_data,
    run_demo,
    validation_loss,
)

OUTPUTS = ["model.dot", "curves.html", "training.log", "metrics.csv", "dashboard.html"]


def slope(values: list[float]) -> float:
    """Least-squares slope of `values` against 0, 1, 2, ... (written out, not flowdl's)."""
    n = len(values)
    x_mean, y_mean = (n - 1) / 2, statistics.fmean(values)
    num = sum((i - x_mean) * (v - y_mean) for i, v in enumerate(values))
    return num / sum((i - x_mean) ** 2 for i in range(n))


def test_demo_learns_decides_from_trends_and_writes_everything(tmp_path: Path) -> None:
    stream = io.StringIO()
    result = run_demo(epochs=40, seed=0, out=tmp_path, stream=stream)
    text = stream.getvalue()
    assert result.learned
    assert result.losses[-1] < 0.01 * result.losses[0]
    assert text.startswith(f"flowdl {fl.__version__} demo")
    assert "epoch  1/40  loss=" in text
    assert "the model learned the task" in text

    # Every decision agrees with the rule, recomputed here from the recorded history.
    decided = {epoch for epoch, _ in result.lr_changes}
    if result.stopped_at is not None:
        decided.add(result.stopped_at)
    since = 0
    for epoch, _ in enumerate(result.val_losses, start=1):
        since += 1
        if since < STALL_WINDOW:
            assert epoch not in decided
            continue
        window = result.val_losses[epoch - STALL_WINDOW : epoch]
        scale = statistics.fmean(window)
        converged = statistics.pvariance(window) < (CONVERGED_SPREAD * scale) ** 2
        stalled = abs(slope(window)) < STALL_SLOPE * scale
        assert (epoch == result.stopped_at) == converged
        if converged:
            break
        assert (epoch in decided) == stalled
        if stalled:
            since = 0
    assert len(result.val_losses) == (result.stopped_at or 40)

    for name in [*OUTPUTS, "model.safetensors"]:
        assert (tmp_path / name).is_file(), name
        assert f"  {name}" in text
    assert "digraph" in (tmp_path / "model.dot").read_text()
    assert "val_loss" in (tmp_path / "curves.html").read_text()
    for page in ("curves.html", "dashboard.html"):
        assert (tmp_path / page).stat().st_size < 1_000_000, page  # light and offline
    if decided:  # the trend decisions are marked on the curves page
        assert '"marks":[{"epoch":' in (tmp_path / "curves.html").read_text()
    dashboard = (tmp_path / "dashboard.html").read_text()
    if shutil.which("dot") is not None:  # the saved dashboard shows the model, profiled
        assert '"svg":"\\u003csvg' in dashboard
        assert "output shape: " in dashboard
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0]
    assert header.startswith("epoch,")
    assert "val_loss" in header
    assert "lr" in header
    assert len((tmp_path / "metrics.csv").read_text().splitlines()) == len(result.losses) + 1

    fresh = build_model()
    report = fl.load_checkpoint(tmp_path / "model.safetensors", fresh)
    assert report.complete
    x, y = make_data(64, torch.Generator().manual_seed(5))
    assert validation_loss(fresh, x, y) < 0.01


def test_demo_draws_svg_when_graphviz_is_installed(tmp_path: Path) -> None:
    import shutil

    if shutil.which("dot") is None:
        pytest.skip("Graphviz's dot is not installed (apt-get install graphviz)")
    run_demo(epochs=2, seed=0, out=tmp_path, stream=io.StringIO())
    assert (tmp_path / "model.svg").read_text().lstrip().startswith("<?xml")
    assert "<svg" in (tmp_path / "model-profile.svg").read_text()


def test_python_dash_m_flowdl_demo(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "flowdl", "demo", "--epochs", "6", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
    )
    losses = [
        float(line.split("loss=")[1].split()[0])
        for line in done.stdout.splitlines()
        if line.startswith("epoch ") and "loss=" in line
    ]
    assert len(losses) == 6, done.stdout + done.stderr
    assert losses[-1] < 0.1 * losses[0]
    assert "fl.Flow(Linear(in_features=2, out_features=32, bias=True))" in done.stdout
    assert f"wrote into {tmp_path}/:" in done.stdout
    assert all((tmp_path / name).is_file() for name in OUTPUTS)
    assert "CPU threads: 1 (a model this small runs fastest on few threads" in done.stdout


def test_demo_dashboard_stays_up_until_the_run_is_looked_at(tmp_path: Path) -> None:
    seen: dict[str, str] = {}

    def linger(url: str) -> None:  # what the command line does while waiting for Enter
        with urllib.request.urlopen(url, timeout=10) as response:
            seen["page"] = response.read().decode()
        seen["url"] = url

    stream = io.StringIO()
    run_demo(epochs=2, seed=0, out=tmp_path, dashboard=True, stream=stream, linger=linger)
    assert seen["url"].startswith("http://127.0.0.1:")
    assert "flowdl demo" in seen["page"]
    assert stream.getvalue().count(seen["url"]) == 1  # printed once, by the monitor
    with pytest.raises(urllib.error.URLError):  # finished: the server is gone
        urllib.request.urlopen(seen["url"], timeout=5)


def test_python_dash_m_flowdl_demo_dashboard_ends_at_end_of_input(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "flowdl", "demo", "--epochs", "2", "--dashboard"]
    done = subprocess.run(
        [*command, "--out", str(tmp_path)],
        input="",
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
    )
    assert "the dashboard stays at http://127.0.0.1:" in done.stdout, done.stdout + done.stderr
    assert f"wrote into {tmp_path}/:" in done.stdout


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "demo" in capsys.readouterr().err


def test_bad_epochs(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["demo", "--epochs", "0"])
    assert "--epochs must be at least 1, got 0" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"flowdl {fl.__version__}"
