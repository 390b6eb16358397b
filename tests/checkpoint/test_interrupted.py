"""Saves killed with SIGKILL at random moments: the file is always a whole checkpoint,
and the partial files they leave are removed by the next save of the same checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from torch import nn

import flowdl as fl
from flowdl._files import PARTIAL, partial_files, remove_stale_partials

ROOT = Path(__file__).resolve().parents[2]

# Runs in a subprocess: forks a child that saves in a loop, kills it with SIGKILL after a
# random delay, checks the file at the path, and does it again.
KILLER = r"""
import json, os, random, signal, sys, time
import torch
torch.set_num_threads(1)
import flowdl as fl
from torch import nn
from flowdl._files import partial_files

directory, kills, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
path = os.path.join(directory, "run.safetensors")
rng = random.Random(seed)

def model(value):
    m = nn.Sequential(*(nn.Linear(256, 256) for _ in range(4)))
    with torch.no_grad():
        for p in m.parameters():
            p.fill_(value)
    return m

models = [model(float(v)) for v in range(4)]
fl.save_checkpoint(path, models[0], epoch=0)
seen, problems, most_partials = [], [], 0
for k in range(kills):
    pid = os.fork()
    if pid == 0:
        try:
            i = 0
            while True:
                i += 1
                fl.save_checkpoint(path, models[i % 4], epoch=i % 4)
        finally:
            os._exit(0)
    time.sleep(rng.uniform(0.0, 0.03))
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    try:
        epoch = fl.checkpoint_info(path).epoch
        target = model(-1.0)
        fl.load_checkpoint(path, target)
        if not all(bool((p == float(epoch)).all()) for p in target.parameters()):
            problems.append(f"kill {k}: the weights are not those of epoch {epoch}")
        seen.append(epoch)
    except Exception as error:
        problems.append(f"kill {k}: {type(error).__name__}: {error}")
    most_partials = max(most_partials, len(partial_files(path)))
before = len(partial_files(path))
fl.save_checkpoint(path, models[1], epoch=1)
print(json.dumps({"seen": seen, "problems": problems, "most_partials": most_partials,
                  "before": before, "after": len(partial_files(path))}))
"""


def test_a_save_killed_at_any_moment_leaves_a_whole_checkpoint(tmp_path: Path) -> None:
    if not hasattr(os, "fork"):
        pytest.skip("needs os.fork (POSIX)")
    done = subprocess.run(
        [sys.executable, "-c", KILLER, str(tmp_path), "32", "15"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["problems"] == []
    assert len(result["seen"]) == 32  # every kill checked: the file was a whole checkpoint
    assert set(result["seen"]) <= {0, 1, 2, 3}
    assert result["after"] == 0  # the next save removed every partial file the kills left
    assert result["most_partials"] <= 1  # each save removed those of the save killed before


def test_partial_files_are_named_for_people(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "model.safetensors"
    seen: list[str] = []
    real_replace = os.replace

    def replace(source: str, target: str) -> None:
        seen.append(Path(source).name)
        real_replace(source, target)

    monkeypatch.setattr("flowdl._files.os.replace", replace)
    fl.save_checkpoint(path, nn.Linear(1, 1))
    (name,) = seen
    assert name.startswith(f".model.safetensors{PARTIAL}{os.getpid()}-")


def test_only_partials_of_finished_processes_are_removed(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)  # fmt: skip
    dead = int(finished.stdout)
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stale = tmp_path / f".model.safetensors{PARTIAL}{dead}-0a1b2c3d"
        running = tmp_path / f".model.safetensors{PARTIAL}{alive.pid}-0a1b2c3d"
        mine = tmp_path / f".model.safetensors{PARTIAL}{os.getpid()}-0a1b2c3d"
        other = tmp_path / f".other.safetensors{PARTIAL}{dead}-0a1b2c3d"
        for file in (stale, running, mine, other):
            file.write_bytes(b"partial")
        assert partial_files(path) == sorted([stale, running, mine])
        fl.save_checkpoint(path, nn.Linear(1, 1))
        assert not stale.exists()  # its process is gone
        assert running.exists()  # a save may still be writing it
        assert mine.exists()
        assert other.exists()  # another checkpoint's
        assert remove_stale_partials(path) == []
    finally:
        alive.kill()
        alive.wait()
