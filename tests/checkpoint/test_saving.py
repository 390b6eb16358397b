"""Saving: what cannot be stored is refused before writing; a failed write replaces nothing."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.optim import lr_scheduler

import flowdl as fl
from flowdl import _files


@pytest.fixture
def existing(tmp_path: Path) -> tuple[Path, bytes]:
    """A good checkpoint already on disk, and its bytes."""
    path = tmp_path / "model.safetensors"
    fl.save_checkpoint(path, nn.Linear(2, 2), epoch=1)
    return path, path.read_bytes()


def assert_untouched(path: Path, data: bytes) -> None:
    assert path.read_bytes() == data
    assert sorted(os.listdir(path.parent)) == [path.name]  # no temporary file left
    assert fl.checkpoint_info(path).epoch == 1


@pytest.mark.parametrize(
    ("extra", "match", "fix"),
    [
        ({"loss": torch.tensor(0.5)}, "extra\\['loss'\\] is a tensor", "tensor.item()"),
        ({"history": [1.0, np.float32(2.0)]}, "extra\\['history'\\]\\[1\\] is a numpy.float32",
         ".item()"),
        ({"fn": len}, "extra\\['fn'\\] is a builtin_function_or_method", "functions and methods"),
        ({"obj": object()}, "extra\\['obj'\\] is a object", "store its data"),
        ({"tags": {"a", "b"}}, "extra\\['tags'\\] is a set", "store its data"),
        ({"table": {(1, 2): [3]}}, None, None),  # tuple keys are data: this one saves
        ({"bad_key": {torch.ones(1): 1}}, "has a key of type torch.Tensor", "string or integer"),
    ],
)  # fmt: skip
def test_extras_that_are_not_data_are_refused_before_writing(
    existing: tuple[Path, bytes], extra: dict[str, Any], match: str | None, fix: str | None
) -> None:
    path, data = existing
    if match is None:
        fl.save_checkpoint(path, nn.Linear(2, 2), **extra)
        assert fl.load_checkpoint(path, nn.Linear(2, 2)).extra == extra
        return
    with pytest.raises(fl.CheckpointError, match=match) as caught:
        fl.save_checkpoint(path, nn.Linear(2, 2), **extra)
    assert fix in caught.value.fix  # type: ignore[operator]
    assert_untouched(path, data)


@pytest.mark.parametrize("epoch", [1.5, "3", True])
def test_epoch_must_be_an_integer(existing: tuple[Path, bytes], epoch: Any) -> None:
    path, data = existing
    with pytest.raises(fl.CheckpointError, match="epoch must be an integer"):
        fl.save_checkpoint(path, nn.Linear(2, 2), epoch=epoch)
    assert_untouched(path, data)


def test_scheduler_state_that_is_code_is_refused(existing: tuple[Path, bytes]) -> None:
    class Warmup:
        """A callable object: LambdaLR stores its attributes, here a function."""

        def __init__(self) -> None:
            self.shape = lambda epoch: min(1.0, epoch / 5)

        def __call__(self, epoch: int) -> float:
            return float(self.shape(epoch))

    model = nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = lr_scheduler.LambdaLR(optimizer, Warmup())
    path, data = existing
    with pytest.raises(fl.CheckpointError) as caught:
        fl.save_checkpoint(path, model, optimizer, scheduler)
    assert "the scheduler's state['lr_lambdas'][0]['shape'] is a function" in str(caught.value)
    assert "recreate it when resuming" in caught.value.fix  # type: ignore[operator]
    assert_untouched(path, data)


def test_a_lambda_lr_with_a_plain_function_saves_and_resumes(tmp_path: Path) -> None:
    model = nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = lr_scheduler.LambdaLR(optimizer, lambda epoch: 0.5**epoch)
    for _ in range(3):
        optimizer.step()
        scheduler.step()
    fl.save_checkpoint(tmp_path / "l.safetensors", model, optimizer, scheduler)
    new_optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    new_scheduler = lr_scheduler.LambdaLR(new_optimizer, lambda epoch: 0.5**epoch)
    fl.load_checkpoint(tmp_path / "l.safetensors", model, new_optimizer, new_scheduler)
    assert new_scheduler.last_epoch == 3
    new_optimizer.step()
    new_scheduler.step()
    assert new_optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**4)


def test_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(fl.CheckpointError, match="directory does not exist") as caught:
        fl.save_checkpoint(tmp_path / "runs" / "a" / "m.safetensors", nn.Linear(1, 1))
    assert "mkdir(parents=True" in caught.value.fix  # type: ignore[operator]


def test_a_write_that_fails_half_way_leaves_the_old_file(
    existing: tuple[Path, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, data = existing
    real_fdopen = os.fdopen

    class HalfWriter:
        """A file that writes half of what it is given, then fails like a full disk."""

        def __init__(self, fd: int, mode: str) -> None:
            self.file = real_fdopen(fd, mode)

        def __enter__(self) -> HalfWriter:
            return self

        def __exit__(self, *args: object) -> None:
            self.file.close()

        def write(self, chunk: bytes) -> int:
            self.file.write(chunk[: len(chunk) // 2])
            self.file.flush()
            raise OSError(28, "No space left on device")

        def flush(self) -> None:
            self.file.flush()

        def fileno(self) -> int:
            return self.file.fileno()

    monkeypatch.setattr(_files.os, "fdopen", HalfWriter)
    with pytest.raises(OSError, match="No space left on device"):
        fl.save_checkpoint(path, nn.Linear(2, 2), epoch=2)
    monkeypatch.undo()
    assert_untouched(path, data)


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_a_crash_before_the_rename_leaves_the_old_file(
    existing: tuple[Path, bytes], monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    path, data = existing

    def crash(*args: object) -> None:
        raise OSError(5, f"{failing} failed")

    monkeypatch.setattr(_files.os, failing, crash)
    with pytest.raises(OSError, match=f"{failing} failed"):
        fl.save_checkpoint(path, nn.Linear(2, 2), epoch=2)
    monkeypatch.undo()
    assert_untouched(path, data)


def test_an_interrupt_during_the_write_leaves_the_old_file(
    existing: tuple[Path, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, data = existing

    def interrupted(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(_files.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fl.save_checkpoint(path, nn.Linear(2, 2), epoch=2)
    monkeypatch.undo()
    assert_untouched(path, data)


def test_the_write_goes_through_a_temporary_file_in_the_same_directory(
    existing: tuple[Path, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _ = existing
    renames: list[tuple[str, str]] = []
    real_replace = os.replace

    def replace(source: str, target: str) -> None:
        renames.append((str(source), str(target)))
        real_replace(source, target)

    monkeypatch.setattr(_files.os, "replace", replace)
    fl.save_checkpoint(path, nn.Linear(2, 2), epoch=5)
    ((source, target),) = renames
    assert Path(source).parent == path.parent
    assert Path(source).name.startswith(".model.safetensors.")
    assert target == str(path)
    assert fl.checkpoint_info(path).epoch == 5
