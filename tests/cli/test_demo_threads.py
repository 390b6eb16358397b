"""The demo picks its CPU threads (one by default), says so, and restores the count."""

from __future__ import annotations

import io

import pytest
import torch

from flowdl._cli import demo, main
from flowdl._cli.demo import run_demo


@pytest.fixture(autouse=True)
def small_epochs(monkeypatch: pytest.MonkeyPatch) -> None:
    """One short epoch is enough to see the threads: 100 samples instead of 1000."""
    monkeypatch.setattr(demo, "TRAIN_SAMPLES", 100)


@pytest.mark.parametrize(
    ("threads", "line"),
    [
        (1, "CPU threads: 1 (a model this small runs fastest on few threads"),
        (2, "CPU threads: 2 (as asked)"),
    ],
)
def test_the_demo_runs_on_the_threads_it_says_and_restores_them(threads: int, line: str) -> None:
    before = torch.get_num_threads()
    stream = io.StringIO()
    run_demo(epochs=1, seed=0, stream=stream, threads=threads)
    assert line in stream.getvalue()
    assert torch.get_num_threads() == before


def test_none_keeps_pytorchs_count() -> None:
    stream = io.StringIO()
    run_demo(epochs=1, seed=0, stream=stream, threads=None)
    assert f"CPU threads: {torch.get_num_threads()} (PyTorch's default" in stream.getvalue()


def test_bad_thread_counts_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["demo", "--threads", "-1"])
    assert "--threads must be at least 1 (or 0 for PyTorch's count), got -1" in (
        capsys.readouterr().err
    )
    with pytest.raises(ValueError, match="at least one thread"):
        run_demo(epochs=1, stream=io.StringIO(), threads=0)
