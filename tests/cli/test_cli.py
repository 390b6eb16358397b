"""``python -m flowdl``: the demo trains and prints a falling loss; bad usage is explained."""

from __future__ import annotations

import subprocess
import sys

import pytest

import flowdl as fl
from flowdl._cli import main
from flowdl._cli.demo import run_demo


def test_demo_learns_the_task() -> None:
    lines: list[str] = []
    result = run_demo(epochs=30, seed=1, echo=lines.append)
    assert result.learned
    assert result.losses[-1] < 0.1 * result.losses[0]
    assert lines[0].startswith(f"flowdl {fl.__version__} demo")
    assert any(line.startswith("epoch  30/30  loss=") for line in lines)
    assert "learned the task" in lines[-1]


def test_python_dash_m_flowdl_demo() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "flowdl", "demo", "--epochs", "20"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    losses = [float(line.split("loss=")[1]) for line in done.stdout.splitlines() if "loss=" in line]
    assert len(losses) >= 3
    assert losses[-1] < losses[0]
    assert "fl.Flow(Linear(in_features=2, out_features=16, bias=True))" in done.stdout


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
