"""The scripts in ``benchmarks/`` run (at toy sizes) and print their tables."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"

SCRIPTS = {
    "chain_overhead.py": (
        ["--width", "4", "--batch", "2", "--nodes", "4", "--rounds", "2", "--calls-per-round", "1"],
        ["train step", "Identity forward", "us/node"],
    ),
    "switch_per_sample.py": (
        ["--batch", "16", "--dim", "8", "--rounds", "2", "--steps-per-round", "1"],
        ["train step", "forward (no_grad)", "ratio"],
    ),
    "parallel_levels.py": (
        ["--dim", "8", "--batch", "4", "--rounds", "2", "--steps-per-round", "1"],
        ["intra-op threads 1", "threaded level"],
    ),
    "observation_cost.py": (
        [
            "--width",
            "4",
            "--batch",
            "2",
            "--layers",
            "4",
            "--rounds",
            "2",
            "--calls-per-round",
            "1",
        ],
        ["| nn.Sequential |", "tags, unobserved", "collect + record"],
    ),
    "fast_mode.py": (
        [
            "--models",
            "mlp",
            "--scale",
            "0.02",
            "--batches",
            "1",
            "--rounds",
            "2",
            "--warmup",
            "1",
            "--backend",
            "eager",
        ],
        ["| model |", "| mlp |"],
    ),
}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_benchmark_script_runs(script: str) -> None:
    args, expected = SCRIPTS[script]
    done = subprocess.run(
        [sys.executable, script, *args],
        cwd=BENCHMARKS,
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    for text in expected:
        assert text in done.stdout, done.stdout
