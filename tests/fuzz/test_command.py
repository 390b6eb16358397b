"""``python -m flowdl fuzz``: options, the report, and the exit code."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from flowdl._cli import main
from flowdl._fuzz import run as fuzz_run
from flowdl._fuzz import shrink as fuzz_shrink
from flowdl._fuzz.trial import Verdict

THREADS = ["--threads", str(torch.get_num_threads())]  # leave the test process as it was


def test_a_clean_run_prints_the_table_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fuzz", "--graphs", "3", "--seed", "400", *THREADS]) == 0
    out = capsys.readouterr().out
    assert out.startswith("flowdl fuzz: 3 graphs from seed 400\ncategory")
    assert "graphs/s" in out
    assert out.rstrip().endswith("no mismatches, no crashes")


def test_a_failure_exits_1_with_its_seed_and_rerun_command(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(description: object, fast: bool = False, eager_outputs: object = None) -> object:
        return Verdict("crash", ["call 0: the graph raised boom"], built=True), []

    monkeypatch.setattr(fuzz_run, "run_trial", failing)
    monkeypatch.setattr(fuzz_shrink, "run_trial", failing)
    assert main(["fuzz", "--graphs", "2", "--seed", "7", *THREADS]) == 1
    out = capsys.readouterr().out
    assert "2 failures:" in out
    assert "seed 7: crash" in out
    assert "rerun: python -m flowdl fuzz --seed 8 --graphs 1" in out
    assert "    call 0: the graph raised boom" not in out  # details are indented once
    assert "  call 0: the graph raised boom" in out
    assert "description:\n    seed 7 [" in out


def test_fast_without_a_number_checks_the_default_count(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[int] = []

    def record(graphs: int, seed: int, fast: int, **kwargs: object) -> fuzz_run.FuzzReport:
        seen.append(fast)
        return fuzz_run.FuzzReport(graphs, seed, fast)

    monkeypatch.setattr(fuzz_run, "fuzz", record)
    assert main(["fuzz", "--fast", *THREADS]) == 0
    assert main(["fuzz", "--fast", "4", *THREADS]) == 0
    assert main(["fuzz", *THREADS]) == 0
    assert seen == [20, 4, 0]
    capsys.readouterr()


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--graphs", "0"], "--graphs must be at least 1, got 0"),
        (["--fast", "-1"], "--fast must be at least 0, got -1"),
        (["--seed", "-3"], "--seed must be at least 0, got -3"),
    ],
)
def test_bad_options_are_refused(
    option: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fuzz", *option])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_python_dash_m_flowdl_fuzz_runs() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "flowdl", "fuzz", "--graphs", "2", "--seed", "400", "--no-shrink"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "flowdl fuzz: 2 graphs from seed 400" in done.stdout
