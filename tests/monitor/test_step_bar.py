"""Monitor.steps: a step bar inside each epoch on a terminal (a pseudo-terminal here), none
in a pipe."""

from __future__ import annotations

import io
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest

import flowdl as fl

SCRIPT = """
import time
import flowdl as fl

monitor = fl.Monitor(2, resources=False)
for epoch in range(2):
    for batch in monitor.steps(range(6)):
        time.sleep(0.06)
    monitor.log(epoch, {"loss": 1.0 / (epoch + 1)})
monitor.finish()
"""


def environment() -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "CI")
    }
    src = str(Path(fl.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
    env.update({"TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"})
    return env


def run_in_a_terminal() -> str:
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-c", SCRIPT],
        stdout=terminal,
        stderr=terminal,
        stdin=subprocess.DEVNULL,
        env=environment(),
        close_fds=True,
    )
    os.close(terminal)
    chunks = []
    while True:
        try:
            data = os.read(controller, 65536)
        except OSError:  # EIO: the terminal closed
            break
        if not data:
            break
        chunks.append(data)
    os.close(controller)
    assert process.wait(timeout=120) == 0, b"".join(chunks).decode(errors="replace")
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode(errors="replace"))


def test_the_bar_is_drawn_on_a_terminal() -> None:
    text = run_in_a_terminal()
    assert "steps/s" in text
    assert "epoch ETA" in text
    assert "━" in text  # the bar itself
    assert "epoch 1/2 " in text
    assert "epoch 2/2 " in text
    assert "6/6" in text  # steps done out of the epoch's six
    assert "epoch 1/2  loss=1.0000" in text  # the epoch's line takes the bar's place
    assert "done: 2/2 epochs" in text


def test_nothing_is_drawn_in_a_pipe() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        env=environment(),
        timeout=120,
        check=True,
    )
    assert "steps/s" not in done.stdout
    assert "━" not in done.stdout
    assert "\x1b[" not in done.stdout
    lines = done.stdout.splitlines()
    assert [line.split("  [")[0] for line in lines] == [
        "epoch 1/2  loss=1.0000",
        "epoch 2/2  loss=0.5000",
        "done: 2/2 epochs in " + lines[2].split(" in ")[1].split("  ")[0] + "  loss=0.5000",
    ]


def test_steps_yields_every_item_and_the_flag_turns_the_bar_off() -> None:
    stream = io.StringIO()
    monitor = fl.Monitor(1, resources=False, output=stream, color=True, progress=False)
    assert list(monitor.steps(iter("abc"))) == ["a", "b", "c"]
    assert stream.getvalue() == ""
    assert monitor._step_counts == [3]


def test_a_styled_stream_draws_the_bar_when_asked() -> None:
    stream = io.StringIO()
    monitor = fl.Monitor(1, resources=False, output=stream, color=True, progress=True)
    assert list(monitor.steps([1, 2])) == [1, 2]
    assert "steps/s" in stream.getvalue()


def test_the_total_comes_from_len_the_argument_or_the_previous_epoch() -> None:
    monitor = fl.Monitor(3, resources=False, output=io.StringIO(), color=True, progress=True)
    list(monitor.steps(iter(range(4))))  # no len, no total: no total shown
    stream = monitor._writer.console()
    assert stream is not None
    list(monitor.steps(iter(range(4))))  # the previous epoch's 4
    assert "4/4" in stream.file.getvalue()  # type: ignore[attr-defined]
    list(monitor.steps(iter(range(2)), total=2))
    assert "2/2" in stream.file.getvalue()  # type: ignore[attr-defined]


def test_a_broken_loop_clears_the_bar_and_counts_its_steps() -> None:
    monitor = fl.Monitor(1, resources=False, output=io.StringIO(), color=True, progress=True)
    for item in monitor.steps(range(10)):
        if item == 3:
            break
    assert monitor._step_counts == [3]  # the generator closed with the loop, bar stopped


@pytest.mark.parametrize("total", [-1, 2.5, True])
def test_a_bad_total_is_explained(total: object) -> None:
    monitor = fl.Monitor(1, resources=False, output=io.StringIO())
    with pytest.raises(ValueError, match="the number of steps must be an int >= 0"):
        monitor.steps(range(3), total=total)  # type: ignore[arg-type]
