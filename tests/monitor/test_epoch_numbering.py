"""Monitor.log counts epochs from 0 or from 1 (the first one logged decides), shown 1-based."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

import flowdl as fl
from tests.monitor.conftest import FakeClock


def run(first: int, clock: FakeClock, tmp_path: Path) -> tuple[fl.Monitor, str, str]:
    stream = io.StringIO()
    monitor = fl.Monitor(3, output=stream, resources=False, clock=clock)
    for epoch in range(first, first + 3):
        clock.advance(2.0)
        monitor.log(epoch, {"loss": 1.0 / (epoch - first + 1)})
    path = monitor.export_csv(tmp_path / f"run{first}.csv")
    return monitor, stream.getvalue(), path.read_text()


def test_a_run_counted_from_0_is_shown_as_one_counted_from_1(
    clock: FakeClock, tmp_path: Path
) -> None:
    monitor, text, table = run(0, clock, tmp_path)
    assert text.splitlines() == [
        "epoch 1/3  loss=1.0000  [2.0s, ETA 4.0s]",
        "epoch 2/3  loss=0.5000  [2.0s, ETA 2.0s]",
        "epoch 3/3  loss=0.3333  [2.0s, done]",
    ]
    assert [row["epoch"] for row in monitor.history] == [1, 2, 3]
    rows = list(csv.DictReader(io.StringIO(table)))
    assert [row["epoch"] for row in rows] == ["1", "2", "3"]
    epochs = [e["data"]["epoch"] for e in monitor._hub.events() if e["type"] == "epoch"]
    assert epochs == [1, 2, 3]


def test_counting_from_1_is_unchanged(clock: FakeClock, tmp_path: Path) -> None:
    from_zero, text_zero, table_zero = run(0, clock, tmp_path)
    from_one, text_one, table_one = run(1, FakeClock(), tmp_path)
    assert text_one == text_zero
    assert table_one == table_zero
    assert from_one.history == from_zero.history


def test_gaps_in_a_run_counted_from_0_spread_the_time(clock: FakeClock) -> None:
    monitor = fl.Monitor(10, output=io.StringIO(), resources=False, clock=clock)
    clock.advance(1.0)
    monitor.log(0)
    clock.advance(4.0)
    monitor.log(4)  # four epochs in 4 s: one second each
    assert monitor.history[-1]["epoch"] == 5
    assert monitor.eta == pytest.approx(5 * 1.0)


@pytest.mark.parametrize(
    ("epochs", "words"),
    [
        ((0, 3), "an epoch from 1 to 2 (this run counts from 0"),
        ((1, 0), "an epoch from 2 to 3 (this run counts from 1"),
        ((0, 0), "epoch 0 is out of order"),
        ((1, 4), "epoch 4 is out of order"),
    ],
)
def test_the_first_epoch_decides_the_range(epochs: tuple[int, int], words: str) -> None:
    monitor = fl.Monitor(3, output=io.StringIO(), resources=False, clock=FakeClock())
    monitor.log(epochs[0])
    with pytest.raises(ValueError, match="out of order") as caught:
        monitor.log(epochs[1])
    assert words in str(caught.value)


def test_a_refused_log_does_not_decide_the_numbering() -> None:
    monitor = fl.Monitor(3, output=io.StringIO(), resources=False, clock=FakeClock())
    with pytest.raises(TypeError):
        monitor.log(0, "not a source")
    monitor.log(1)  # the failed log(0) fixed nothing: this run counts from 1
    assert monitor.history[0]["epoch"] == 1
