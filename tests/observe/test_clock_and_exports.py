"""The wall clock (eta, elapsed, flush_count), the CSV of trends and the training log."""

from __future__ import annotations

import re
import time
import types
from pathlib import Path

import pytest
import torch
from torch import nn

import flowdl as fl
from flowdl._observe.clock import Clock
from flowdl._observe.export import csv_text, log_text


class FakeTime:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return 1_700_000_000.0 + self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    fake = FakeTime()
    module = types.SimpleNamespace(monotonic=fake.monotonic, time=fake.time)
    for name in ("_executor.core", "_observe.state", "_observe.progress", "_observe.tree_metrics"):
        monkeypatch.setattr(f"flowdl.{name}.time", module)
    monkeypatch.setattr("flowdl._observe.clock.time", module)
    return fake


def test_the_clock_starts_at_the_first_forward(clock: FakeTime) -> None:
    g = fl.Flow(nn.Identity()).build()
    assert g.elapsed == 0.0
    assert g.eta(10) == 0.0
    clock.now += 5
    g(torch.ones(1))
    clock.now += 2
    g(torch.ones(1))
    clock.now += 1.5
    assert g.elapsed == 3.5


def test_eta_is_the_estimated_epoch_times_the_epochs_left(clock: FakeTime) -> None:
    g = fl.Flow(nn.Identity()).build()
    g(torch.ones(1))  # training starts at t=1000
    for seconds in (10.0, 20.0, 30.0):
        clock.now += seconds
        g.record("loss", 1.0)
        g.flush()
    assert g.flush_count == 3
    # flowdl's one ETA rule (also the monitor's): the first epoch is left out once a
    # later one is known, so the estimate is the mean of 20 s and 30 s
    assert g.eta(10) == (20.0 + 30.0) / 2 * 7  # 175 s
    assert g.eta(3) == 0.0
    assert g.eta(2) == 0.0
    clock.now += 1000  # the estimate comes from the flushes, not from now
    assert g.eta(10) == 175.0
    with pytest.raises(ValueError, match="expected an int >= 1"):
        g.eta(0)


def test_without_a_forward_the_clock_starts_at_the_first_record(clock: FakeTime) -> None:
    g = fl.Flow(nn.Identity()).build()
    clock.now += 100
    g.record("loss", 1.0)
    clock.now += 4
    g.flush()
    assert g.eta(3) == 8.0


def test_flushes_without_data_do_not_count(clock: FakeTime) -> None:
    g = fl.Flow(nn.Identity()).build()
    g.flush()
    g.record("loss", 1.0)
    g.flush()
    g.flush()
    assert g.flush_count == 1


# ----------------------------------------------------------------------------------- CSV


def test_csv_of_two_tags_and_three_flushes(tmp_path: Path) -> None:
    g = fl.Flow(nn.Identity()).tag("a").through(lambda x: 2 * x).tag("b").build()
    for x in (1.0, 2.0, 3.0):
        g(torch.tensor(x))
        g.collect("a", "b")
        g.flush()
    path = g.export_trends(tmp_path / "trends.csv")
    assert path == tmp_path / "trends.csv"
    text = path.read_text()
    lines = text.splitlines()
    assert len(lines) == 4
    assert lines[0].startswith("epoch,")
    assert lines[1].startswith("1,")
    assert text == "epoch,a,b\n1,1,2\n2,2,4\n3,3,6\n"


def test_csv_selection_formatting_and_short_series(tmp_path: Path) -> None:
    g = fl.Flow(nn.Identity()).split(nn.Identity(), nn.Identity()).tag_group("h")
    graph = g.merge(fl.Add()).build()
    graph.record("zeta", 1 / 3)
    graph.record("alpha", 123456789.0)
    graph.flush()
    graph.record("zeta", 2.5e-7)
    graph(torch.tensor(0.5))
    graph.collect("h")
    graph.flush()
    every = graph.export_trends(tmp_path / "all.csv").read_text()
    # row i holds the i-th value of each history (goDl's layout): h_0 has one value
    assert every == ("epoch,alpha,h_0,h_1,zeta\n1,1.2345679e+08,0.5,0.5,0.33333333\n2,,,,2.5e-07\n")
    chosen = graph.export_trends(tmp_path / "some.csv", "zeta", "h", "missing").read_text()
    assert chosen == "epoch,zeta,h_0,h_1\n1,0.33333333,0.5,0.5\n2,2.5e-07,,\n"


def test_csv_text_quotes_odd_names() -> None:
    assert csv_text([("a,b", [1.0])]) == 'epoch,"a,b"\n1,1\n'


def test_exports_without_data_say_to_flush(tmp_path: Path) -> None:
    g = fl.Flow(nn.Identity()).build()
    with pytest.raises(ValueError, match=re.escape("no epoch data to export (call flush() first)")):
        g.export_trends(tmp_path / "t.csv")
    with pytest.raises(ValueError, match=re.escape("no epoch data to log (call flush() first)")):
        g.write_log(tmp_path / "t.log", 10)
    g.record("loss", 1.0)  # buffered is not flushed
    with pytest.raises(ValueError, match="no epoch data to export for 'loss'"):
        g.export_trends(tmp_path / "t.csv", "loss")
    assert list(tmp_path.iterdir()) == []


def test_exports_replace_files_whole(tmp_path: Path) -> None:
    g = fl.Flow(nn.Identity()).build()
    g.record("loss", 0.5)
    g.flush()
    target = tmp_path / "out.csv"
    target.write_text("old")
    g.export_trends(target)
    assert target.read_text() == "epoch,loss\n1,0.5\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]  # no temporary left
    with pytest.raises(FileNotFoundError, match="does not exist"):
        g.export_trends(tmp_path / "missing" / "out.csv")
    with pytest.raises(IsADirectoryError):
        g.write_log(tmp_path, 3)


# ------------------------------------------------------------------------- the log


def test_log_text_layout() -> None:
    clock = Clock(start=0.0)
    for end in (1.5, 3.5, 6.5):
        clock.epoch_ended(now=end)
    series = [("loss", [0.5, 0.25, 0.0]), ("lr", [1e-3, 1e-4]), ("big", [123.456, 1234.5, 7.0])]
    body = log_text(series, clock, total_epochs=5).split("\n", 1)[1]
    assert body == (
        "epoch   1  loss=0.5000  lr=0.0010  big=123.46  [1.5s  ETA 6.0s]\n"
        # flowdl's one ETA rule: the first epoch is left out once a later one is known
        "epoch   2  loss=0.2500  lr=1.00e-04  big=1234.50  [2.0s  ETA 6.0s]\n"
        "epoch   3  loss=0  big=7.0000  [3.0s  ETA 5.0s]\n"
    )
    without_total = log_text(series, clock, total_epochs=0).split("\n", 1)[1]
    assert without_total.splitlines()[0] == "epoch   1  loss=0.5000  lr=0.0010  big=123.46  [1.5s]"
    done = log_text(series, clock, total_epochs=3).splitlines()
    assert done[3].endswith("[3.0s]")  # nothing remains after the last epoch


def test_log_lines_without_timestamps_have_no_brackets() -> None:
    clock = Clock(start=0.0)
    clock.epoch_ended(now=0.0)  # a zero duration is not shown
    body = log_text([("loss", [1.0, 2.0])], clock, total_epochs=4).split("\n", 1)[1]
    assert body == "epoch   1  loss=1.0000\nepoch   2  loss=2.0000\n"


def test_write_log_of_a_graph(clock: FakeTime, tmp_path: Path) -> None:
    g = fl.Flow(nn.Identity()).tag("x").build()
    g(torch.tensor(2.0))
    for seconds in (65.0, 55.0):
        clock.now += seconds
        g(torch.tensor(2.0))
        g.collect("x")
        g.record("loss", seconds / 100)
        g.flush()
    text = g.write_log(tmp_path / "train.log", 4).read_text()
    header, *lines = text.splitlines()
    stamp = header.removeprefix("# flowdl training log — ")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", stamp), header
    assert lines == [
        "epoch   1  loss=0.6500  x=2.0000  [1m05s  ETA 3m15s]",
        "epoch   2  loss=0.5500  x=2.0000  [55.0s  ETA 1m50s]",  # 55 s x 2 epochs left
    ]
    only_loss = g.write_log(tmp_path / "loss.log", 0, "loss").read_text().splitlines()
    assert only_loss[1:] == ["epoch   1  loss=0.6500  [1m05s]", "epoch   2  loss=0.5500  [55.0s]"]
    with pytest.raises(ValueError, match="expected an int >= 0"):
        g.write_log(tmp_path / "bad.log", -1)


def test_header_time_is_the_first_flush() -> None:
    clock = Clock(start=0.0)
    before = time.time()
    clock.epoch_ended(now=1.0)
    assert clock.first_end_wall is not None
    assert clock.first_end_wall >= before


def test_setting_hooks_does_not_start_the_clock(clock: FakeTime) -> None:
    g = fl.Flow(nn.Identity()).build()
    g.on_flush(lambda means: None)
    g.on_log(lambda values: None)
    clock.now += 50  # time spent loading data, say
    g(torch.ones(1))
    clock.now += 10
    g.record("loss", 1.0)
    g.flush()
    assert g.eta(2) == 10.0
    assert g.elapsed == 10.0
