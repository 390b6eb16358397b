"""flowdl logs through `logging.getLogger("flowdl")`; the monitor's lines still go to stdout."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
import torch
from torch import nn

import flowdl as fl
from tests.monitor.conftest import FakeClock


def test_the_package_logger_has_only_a_null_handler() -> None:
    package = logging.getLogger("flowdl")
    assert [type(handler) for handler in package.handlers] == [logging.NullHandler]
    for name in ("flowdl.monitor", "flowdl.observe", "flowdl.checkpoint"):
        assert logging.getLogger(name).handlers == []


def test_monitor_lines_go_to_stdout_and_to_the_log(
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    clock: FakeClock,
) -> None:
    caplog.set_level(logging.INFO, logger="flowdl")
    monitor = fl.Monitor(2, resources=False, clock=clock, color=False)
    clock.advance(1.0)
    monitor.log(1, {"loss": 0.5})
    clock.advance(1.0)
    monitor.log(2, {"loss": 0.25})
    monitor.finish()
    printed = capsys.readouterr().out.splitlines()
    assert printed == [
        "epoch 1/2  loss=0.5000  [1.0s, ETA 1.0s]",
        "epoch 2/2  loss=0.2500  [1.0s, done]",
        "done: 2/2 epochs in 2.0s  loss=0.2500",
    ]
    records = [r for r in caplog.records if r.name == "flowdl.monitor"]
    assert [r.getMessage() for r in records] == printed
    assert all(r.levelno == logging.INFO for r in records)


def test_the_monitor_can_be_silenced_in_the_log_without_touching_stdout(
    caplog: pytest.LogCaptureFixture, clock: FakeClock
) -> None:
    caplog.set_level(logging.WARNING, logger="flowdl")
    stream = io.StringIO()
    monitor = fl.Monitor(1, output=stream, resources=False, clock=clock)
    monitor.log(1, {"loss": 0.5})
    assert caplog.records == []
    assert stream.getvalue().startswith("epoch 1/1  loss=0.5000")


def test_graph_log_is_printed_and_logged(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.INFO, logger="flowdl")
    g = fl.Flow(nn.Identity()).tag("x").build()
    g(torch.tensor([1.0, 3.0]))
    g.log()
    assert capsys.readouterr().err == "x: 2.0000 (mean of [2])\n"
    assert [(r.name, r.getMessage()) for r in caplog.records] == [
        ("flowdl.observe", "x: 2.0000 (mean of [2])")
    ]


def test_checkpoints_are_logged_at_debug(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    caplog.set_level(logging.DEBUG, logger="flowdl")
    g = fl.Flow(nn.Linear(2, 2)).build()
    path = tmp_path / "model.fdl"
    fl.save_checkpoint(path, g)
    fl.load_checkpoint(path, fl.Flow(nn.Linear(2, 2)).build())
    messages = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    assert messages[0][:2] == ("flowdl.checkpoint", logging.DEBUG)
    assert messages[0][2].startswith(f"saved checkpoint {path} (")
    assert messages[1] == (
        "flowdl.checkpoint",
        logging.DEBUG,
        f"loaded checkpoint {path}: 2 tensors loaded",
    )
