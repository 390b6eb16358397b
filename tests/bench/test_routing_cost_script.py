"""``benchmarks/routing_cost.py`` runs at toy size and prints its tables."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def test_routing_cost_script_runs() -> None:
    args = ["--dim", "4", "--batch", "8", "--experts", "3", "--k", "1", "--rounds", "2"]
    done = subprocess.run(
        [sys.executable, "routing_cost.py", *args, "--calls-per-round", "1"],
        cwd=BENCHMARKS,
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    for text in ("| gate, routing never asked |", "collect_routing (collected - watched)", " ns "):
        assert text in done.stdout, done.stdout
