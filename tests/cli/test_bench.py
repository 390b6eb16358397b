"""``python -m flowdl bench``: runs end to end at a tiny scale; bad options are explained."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from flowdl._bench.models import MODELS
from flowdl._cli import main


def test_python_dash_m_flowdl_bench(tmp_path: Path) -> None:
    md, js = tmp_path / "bench.md", tmp_path / "bench.json"
    args = ["--scale", "0.02", "--rounds", "1", "--warmup", "0", "--batches", "1", "--threads", "1"]
    args += ["--no-ops", "--no-overhead", "--output", str(md), "--output", str(js)]
    done = subprocess.run(
        [sys.executable, "-m", "flowdl", "bench", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    assert f"wrote {md}" in done.stdout
    assert f"wrote {js}" in done.stdout
    text = md.read_text()
    for name in MODELS:
        assert f"| {name} |" in text
    assert "`python -m flowdl bench --scale 0.02 --rounds 1" in text
    data = json.loads(js.read_text())
    assert len(data["models"]) == 2 * len(MODELS)
    assert data["config"]["scale"] == 0.02


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rounds", "0"], "--rounds must be at least 1, got 0"),
        (["--batches", "0"], "--batches must be at least 1, got 0"),
        (["--warmup", "-1"], "--warmup must be at least 0, got -1"),
        (["--scale", "0"], "--scale must be positive, got 0.0"),
        (["--models", "mlp,resnet"], "--models: unknown model 'resnet'; the models are: mlp,"),
        (["--protocols", "fast"], "--protocols: got 'fast'; choose from flodl, tuned"),
    ],
)
def test_bad_options(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["bench", *args])
    assert message in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_no_cuda(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["bench", "--device", "cuda"])
    assert "--device cuda: this torch build sees no CUDA device" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rounds", "0"], "--rounds must be at least 1, got 0"),
        (["--scale", "-1"], "--scale must be positive, got -1.0"),
        (["--models", "switch,mlp"], "--models: unknown dynamic model 'mlp'; the dynamic models"),
    ],
)
def test_bad_dynamic_options(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["bench", "--suite", "dynamic", *args])
    assert message in capsys.readouterr().err


def test_dynamic_suite_from_the_command_line(tmp_path: Path) -> None:
    md = tmp_path / "dynamic.md"
    args = ["--suite", "dynamic", "--models", "switch", "--scale", "0.0625", "--rounds", "1"]
    args += ["--warmup", "0", "--batches", "1", "--backend", "eager", "--output", str(md)]
    done = subprocess.run(
        [sys.executable, "-m", "flowdl", "bench", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    text = md.read_text()
    assert text.count("| switch |") == 2
    assert "batch 16, width 16" in text
