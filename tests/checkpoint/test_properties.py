"""Property: no damaged or truncated checkpoint ever loads, and none changes the model."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import flowdl as fl
from tests.checkpoint.helpers import assert_same, snapshot, train_step
from tests.checkpoint.test_refusals import Trained, make


@functools.cache
def good_bytes() -> bytes:
    """A checkpoint with model, Adam and StepLR state and extras, as bytes."""
    source = Trained(seed=0)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "good.safetensors"
        fl.save_checkpoint(
            path, source.model, source.optimizer, source.scheduler, epoch=2, note="ok"
        )
        return path.read_bytes()


@functools.cache
def target() -> Trained:
    """The model a damaged file is loaded into (shared: a refused load never changes it)."""
    return Trained(seed=1)


def assert_refused(data: bytes) -> None:
    model = target()
    before = model.snapshot()
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "damaged.safetensors"
        path.write_bytes(data)
        with pytest.raises(fl.CheckpointError):
            model.load(path)
        with pytest.raises(fl.CheckpointError):
            fl.checkpoint_info(path)
    assert_same(model.snapshot(), before)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_changed_byte_is_refused(data: st.DataObject) -> None:
    good = good_bytes()
    position = data.draw(st.integers(0, len(good) - 1), label="position")
    flip = data.draw(st.integers(1, 255), label="xor")
    damaged = bytearray(good)
    damaged[position] ^= flip
    assert_refused(bytes(damaged))


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_truncation_is_refused(data: st.DataObject) -> None:
    good = good_bytes()
    assert_refused(good[: data.draw(st.integers(0, len(good) - 1), label="length")])


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_several_changed_bytes_in_the_header_are_refused(data: st.DataObject) -> None:
    good = good_bytes()
    header_end = 8 + int.from_bytes(good[:8], "little")
    damaged = bytearray(good)
    for _ in range(data.draw(st.integers(2, 8), label="count")):
        position = data.draw(st.integers(0, header_end - 1))
        damaged[position] = data.draw(st.integers(0, 255))
    if bytes(damaged) != good:
        assert_refused(bytes(damaged))


def test_the_good_file_loads() -> None:
    # The control for the properties above: unchanged bytes load, and resume.
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "good.safetensors"
        path.write_bytes(good_bytes())
        fresh = Trained(seed=3)
        report = fresh.load(path)
        assert report.epoch == 2
        assert report.extra == {"epoch": 2, "note": "ok"}
        reference = Trained(seed=0)
        assert_same(
            snapshot(fresh.model, fresh.optimizer), snapshot(reference.model, reference.optimizer)
        )
        batch = (torch.randn(4, 3), torch.randn(4, 2))
        assert train_step(fresh.model, fresh.optimizer, batch) == train_step(
            reference.model, reference.optimizer, batch
        )
        assert isinstance(make(), fl.Graph)
