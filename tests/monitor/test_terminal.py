"""The terminal line: its exact text, rich styling on a terminal only, the summary line."""

from __future__ import annotations

import io
import re
import subprocess
import sys

import pytest
import torch

import flowdl as fl
from flowdl._monitor.record import EpochRecord
from flowdl._monitor.terminal import TerminalWriter, epoch_line, plain
from tests.monitor.conftest import FakeClock

ANSI = re.compile(r"\x1b\[[0-9;]*m")


class Graphish:
    """Anything with latest_metrics() is a source, as fl.Graph will be."""

    def latest_metrics(self) -> dict[str, float]:
        return {"encoder.loss": 0.25, "head.accuracy": 0.875}


class TerminalStream(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def plain_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "JUPYTER_COLUMNS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")


def run_three(stream: io.StringIO, clock: FakeClock, **options: object) -> fl.Monitor:
    monitor = fl.Monitor(12, output=stream, resources=False, clock=clock, **options)  # type: ignore[arg-type]
    clock.advance(2.0)
    monitor.log(1, {"loss": torch.tensor(1.5), "lr": 1e-4})
    clock.advance(0.5)
    monitor.log(2, {"loss": 0.123456, "lr": 1e-4}, Graphish())
    clock.advance(0.5)
    monitor.log(3, {"loss": 0.0})
    return monitor


def test_plain_lines_exactly(clock: FakeClock) -> None:
    stream = io.StringIO()
    monitor = run_three(stream, clock)
    monitor.finish()
    assert stream.getvalue().splitlines() == [
        "epoch  1/12  loss=1.5000  lr=1.00e-04  [2.0s, ETA 22.0s]",
        "epoch  2/12  loss=0.1235  lr=1.00e-04  encoder.loss=0.2500  head.accuracy=0.8750"
        "  [500ms, ETA 5.0s]",
        "epoch  3/12  loss=0  [500ms, ETA 4.5s]",
        "done: 3/12 epochs in 3.0s  loss=0",
    ]


def test_last_epoch_says_done(clock: FakeClock) -> None:
    stream = io.StringIO()
    monitor = fl.Monitor(1, output=stream, resources=False, clock=clock)
    clock.advance(65.0)
    monitor.log(1, {"loss": 123.456})
    assert stream.getvalue() == "epoch 1/1  loss=123.46  [1m05s, done]\n"


def test_no_escape_codes_in_a_string_stream(clock: FakeClock, plain_environment: None) -> None:
    stream = io.StringIO()
    run_three(stream, clock)
    assert "\x1b" not in stream.getvalue()


def test_rich_styles_a_terminal_and_reads_the_same(
    clock: FakeClock, plain_environment: None
) -> None:
    styled, unstyled = TerminalStream(), io.StringIO()
    run_three(styled, FakeClock())
    run_three(unstyled, clock, color=False)
    assert "\x1b[" in styled.getvalue()
    assert ANSI.sub("", styled.getvalue()) == unstyled.getvalue()


def test_forced_colour_and_forced_plain(clock: FakeClock, plain_environment: None) -> None:
    forced = io.StringIO()
    run_three(forced, clock, color=True)
    assert "\x1b[1mepoch  1/12\x1b[0m" in forced.getvalue()
    terminal = TerminalStream()
    run_three(terminal, FakeClock(), color=False)
    assert "\x1b" not in terminal.getvalue()


def test_dumb_terminal_gets_plain_text(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch, plain_environment: None
) -> None:
    monkeypatch.setenv("TERM", "dumb")
    stream = TerminalStream()
    run_three(stream, clock)
    assert "\x1b" not in stream.getvalue()


def test_rich_markup_in_a_metric_name_is_printed_literally(clock: FakeClock) -> None:
    stream = io.StringIO()
    monitor = fl.Monitor(2, output=stream, resources=False, clock=clock, color=True)
    clock.advance(1.0)
    monitor.log(1, {"[red]x[/red]": 1.0})
    assert "[red]x[/red]" in ANSI.sub("", stream.getvalue())


def test_a_pipe_gets_no_escape_codes() -> None:
    script = (
        "import flowdl as fl\n"
        "m = fl.Monitor(2)\n"
        "m.log(1, {'loss': 0.5}); m.log(2, {'loss': 0.25}); m.finish()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    lines = done.stdout.splitlines()
    assert "\x1b" not in done.stdout
    assert lines[0].startswith("epoch 1/2  loss=0.5000  [")
    assert lines[-1].startswith("done: 2/2 epochs in ")


def test_gpu_memory_joins_the_line() -> None:
    record = EpochRecord(
        1,
        1.0,
        1.0,
        3.0,
        {"loss": 0.5},
        {"gpu_allocated_bytes": 2**30, "gpu_reserved_bytes": 3 * 2**30},
    )
    assert plain(epoch_line(record, 4)) == (
        "epoch 1/4  loss=0.5000  [1.0s, ETA 3.0s]  gpu 1.0 GiB / 3.0 GiB reserved"
    )


def test_writer_follows_sys_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    TerminalWriter(None, None).write([("hello", "bold")])
    assert capsys.readouterr().out == "hello\n"
