"""Monitor.log's sources and checks, finish, watch, and what the monitor reports."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from torch import nn

import flowdl as fl
from tests.monitor.conftest import FakeClock


class Graphish:
    def __init__(self, metrics: object) -> None:
        self.metrics = metrics
        self.label = "encoder"

    def latest_metrics(self) -> object:
        return self.metrics


def quiet(total: int = 5, clock: FakeClock | None = None) -> fl.Monitor:
    return fl.Monitor(total, output=io.StringIO(), resources=False, clock=clock or FakeClock())


def test_sources_merge_in_order() -> None:
    monitor = quiet()
    monitor.log(
        1,
        {"loss": torch.tensor(0.5, dtype=torch.float64), "count": 3, "np": np.float32(0.25)},
        Graphish({"enc.acc": torch.tensor([0.75])}),
    )
    row = monitor.history[0]
    assert list(row)[4:] == ["loss", "count", "np", "enc.acc"]
    assert (row["loss"], row["count"], row["np"], row["enc.acc"]) == (0.5, 3.0, 0.25, 0.75)


def test_a_real_graph_is_a_source_once_it_has_latest_metrics() -> None:
    graph = fl.Flow(nn.Linear(2, 2)).build()
    if not hasattr(graph, "latest_metrics"):
        with pytest.raises(TypeError, match="cannot read metrics from this source"):
            quiet().log(1, graph)
    else:
        quiet().log(1, graph)


def test_name_given_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="'loss' is given twice") as caught:
        quiet().log(1, {"loss": 1.0}, Graphish({"loss": 2.0}))
    assert "source 1 (a dict)" in str(caught.value)
    assert "source 2 (Graphish.latest_metrics())" in str(caught.value)


@pytest.mark.parametrize(
    ("source", "error", "words"),
    [
        (3.0, TypeError, "cannot read metrics from this source"),
        ({"loss": "low"}, TypeError, "'loss' is not a number"),
        ({"loss": True}, TypeError, "'loss' is not a number"),
        ({"loss": torch.ones(3)}, TypeError, "of shape [3]"),
        ({"": 1.0}, ValueError, "non-empty string"),
        ({7: 1.0}, TypeError, "non-empty string"),
        ({"epoch": 1.0}, ValueError, "taken by the monitor's own column"),
        ({"cpu_percent": 1.0}, ValueError, "taken by the monitor's own column"),
        (Graphish([1.0]), TypeError, "latest_metrics() did not return a mapping"),
    ],
)
def test_bad_sources_are_explained(source: object, error: type[Exception], words: str) -> None:
    monitor = quiet()
    with pytest.raises(error) as caught:
        monitor.log(1, source)
    assert words in str(caught.value)
    assert "Monitor.log(epoch=1, ...)" in str(caught.value)
    assert monitor.history == []


@pytest.mark.parametrize(
    ("epochs", "words"),
    [
        ((-1,), "epoch -1 is out of order"),
        ((6,), "epoch 6 is out of order"),
        ((1, 0), "epoch 0 is out of order"),
        ((0, 5), "an epoch from 1 to 4 (this run counts from 0"),
        ((2, 2), "epoch 2 is out of order"),
        ((3, 1), "an epoch from 4 to 5"),
    ],
)
def test_epochs_out_of_order_are_refused(epochs: tuple[int, ...], words: str) -> None:
    monitor = quiet()
    *fine, wrong = epochs
    for epoch in fine:
        monitor.log(epoch)
    with pytest.raises(ValueError, match="out of order") as caught:
        monitor.log(wrong)
    assert words in str(caught.value)


def test_epoch_must_be_an_int() -> None:
    with pytest.raises(TypeError, match="the epoch must be an int"):
        quiet().log(1.0)  # type: ignore[arg-type]


@pytest.mark.parametrize(("total", "error"), [(0, ValueError), (2.0, TypeError), (True, TypeError)])
def test_total_epochs_is_checked(total: object, error: type[Exception]) -> None:
    with pytest.raises(error, match=r"fl\.Monitor"):
        fl.Monitor(total)  # type: ignore[arg-type]


def test_finish_is_idempotent_and_ends_logging(clock: FakeClock) -> None:
    stream = io.StringIO()
    monitor = fl.Monitor(4, output=stream, resources=False, clock=clock)
    clock.advance(1.0)
    monitor.log(1, {"loss": 0.5})
    clock.advance(1.0)
    monitor.log(2, {"accuracy": 0.5})
    monitor.finish()
    monitor.finish()
    assert monitor.finished
    assert stream.getvalue().splitlines()[-1] == "done: 2/4 epochs in 2.0s  accuracy=0.5000"
    assert stream.getvalue().count("done:") == 1
    with pytest.raises(ValueError, match="has finished"):
        monitor.log(3)


def test_finish_with_nothing_logged(clock: FakeClock) -> None:
    stream = io.StringIO()
    monitor = fl.Monitor(3, output=stream, resources=False, clock=clock)
    clock.advance(0.25)
    monitor.finish()
    assert stream.getvalue() == "done: 0/3 epochs in 250ms\n"
    assert monitor.eta is None


def test_context_manager_finishes_even_on_error(clock: FakeClock) -> None:
    stream = io.StringIO()
    monitor = fl.Monitor(3, output=stream, resources=False, clock=clock)

    def train() -> None:
        with monitor:
            monitor.log(1)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        train()
    assert monitor.finished
    assert stream.getvalue().splitlines()[-1].startswith("done: 1/3 epochs")


def test_elapsed_and_history(clock: FakeClock) -> None:
    monitor = quiet(3, clock)
    clock.advance(2.0)
    monitor.log(1, {"loss": 0.5})
    clock.advance(1.0)
    assert monitor.elapsed == 3.0
    assert monitor.history == [
        {"epoch": 1, "duration_s": 2.0, "elapsed_s": 2.0, "eta_s": 4.0, "loss": 0.5}
    ]
