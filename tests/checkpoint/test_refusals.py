"""Files that are not good checkpoints are refused with a clear error, changing nothing."""

from __future__ import annotations

import gzip
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch
from torch import nn
from torch.optim import lr_scheduler

import flowdl as fl
from flowdl._checkpoint import container
from tests.checkpoint.helpers import assert_same, snapshot, train_step


def make(seed: int = 0) -> fl.Graph:
    torch.manual_seed(seed)
    return (
        fl.Flow(nn.Linear(3, 6))
        .through(nn.BatchNorm1d(6))
        .through(nn.ReLU())
        .through(nn.Linear(6, 2))
        .build()
    )


class Trained:
    """A model, an Adam and a StepLR with state, and their snapshot."""

    def __init__(self, seed: int) -> None:
        self.model = make(seed)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=0.01)
        self.scheduler = lr_scheduler.StepLR(self.optimizer, step_size=1, gamma=0.5)
        generator = torch.Generator().manual_seed(seed)
        for _ in range(2):
            batch = (torch.randn(8, 3, generator=generator), torch.randn(8, 2, generator=generator))
            train_step(self.model, self.optimizer, batch)
            self.scheduler.step()

    def snapshot(self) -> dict[str, Any]:
        state = snapshot(self.model, self.optimizer)
        state["scheduler"] = self.scheduler.state_dict()
        return state

    def load(self, path: Path, **kwargs: Any) -> fl.LoadReport:
        return fl.load_checkpoint(path, self.model, self.optimizer, self.scheduler, **kwargs)


@pytest.fixture
def good(tmp_path: Path) -> Path:
    source = Trained(seed=0)
    path = tmp_path / "good.safetensors"
    fl.save_checkpoint(path, source.model, source.optimizer, source.scheduler, epoch=2)
    return path


def refused(path: Path, match: str, **kwargs: Any) -> fl.CheckpointError:
    """Loading `path` raises a CheckpointError matching `match` and changes nothing."""
    target = Trained(seed=1)
    before = target.snapshot()
    with pytest.raises(fl.CheckpointError, match=match) as caught:
        target.load(path, **kwargs)
    assert_same(target.snapshot(), before)
    assert str(path) in str(caught.value)  # the message names the file
    return caught.value


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# ------------------------------------------------------------------- foreign files


def test_a_missing_file(tmp_path: Path) -> None:
    error = refused(tmp_path / "nowhere.safetensors", "there is no checkpoint at this path")
    assert "FileNotFoundError" in str(error)


def test_a_directory(tmp_path: Path) -> None:
    (tmp_path / "dir.safetensors").mkdir()
    refused(tmp_path / "dir.safetensors", "is a directory")


def test_an_empty_file(tmp_path: Path) -> None:
    refused(write(tmp_path / "empty", b""), "an empty file")


def test_a_text_file(tmp_path: Path) -> None:
    error = refused(
        write(tmp_path / "notes.txt", b"epoch 3: loss 0.25\n" * 5), "safetensors header"
    )
    assert "first bytes b'epoch 3: loss 0." in str(error)


def test_a_file_of_a_few_bytes(tmp_path: Path) -> None:
    refused(write(tmp_path / "tiny", b"{}"), "truncated")


@pytest.mark.parametrize("zipped", [True, False])
def test_a_pickle_from_torch_save_is_never_unpickled(tmp_path: Path, zipped: bool) -> None:
    class Boom:
        def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
            return (Path.write_text, (tmp_path / "pwned", "code ran"))

    path = tmp_path / "model.pt"
    torch.save({"weight": torch.ones(2), "boom": Boom()}, path,
               _use_new_zipfile_serialization=zipped)  # fmt: skip
    kind = "zip archive" if zipped else "Python pickle"
    error = refused(path, kind)
    assert "never unpickles" in error.fix  # type: ignore[operator]
    assert not (tmp_path / "pwned").exists()


def test_a_plain_pickle(tmp_path: Path) -> None:
    refused(write(tmp_path / "p.pkl", pickle.dumps({"a": 1}, protocol=4)), "Python pickle")


def test_a_gzipped_checkpoint(tmp_path: Path, good: Path) -> None:
    error = refused(write(tmp_path / "g.gz", gzip.compress(good.read_bytes())), "gzip")
    assert "gunzip" in error.fix  # type: ignore[operator]


def test_a_plain_safetensors_file(tmp_path: Path) -> None:
    path = tmp_path / "weights.safetensors"
    safetensors.torch.save_file(make().state_dict(), path)
    error = refused(path, "plain safetensors file of weights, without flowdl metadata")
    assert "without optimizer=" in error.fix  # type: ignore[operator]
    assert "9 tensors" in str(error)
    with pytest.raises(fl.CheckpointError, match=r"not written by fl\.save_checkpoint"):
        fl.checkpoint_info(path)


def test_a_checkpoint_from_a_newer_flowdl(tmp_path: Path) -> None:
    metadata = {"format": container.FORMAT, "flowdl.format_version": "99"}
    path = tmp_path / "future.safetensors"
    safetensors.torch.save_file({"model/x": torch.ones(1)}, path, metadata)
    error = refused(path, "format version 99, newer than this flowdl reads")
    assert "upgrade flowdl" in error.fix  # type: ignore[operator]


# ------------------------------------------------------------- truncated, damaged


def header_end(data: bytes) -> int:
    return 8 + int.from_bytes(data[:8], "little")


@pytest.mark.parametrize("where", ["size", "header", "data", "last byte"])
def test_truncated_files(tmp_path: Path, good: Path, where: str) -> None:
    data = good.read_bytes()
    cut = {"size": 5, "header": header_end(data) // 2, "data": (header_end(data) + len(data)) // 2,
           "last byte": len(data) - 1}[where]  # fmt: skip
    refused(write(tmp_path / "cut.safetensors", data[:cut]), "truncated")


def test_a_flipped_byte_in_the_tensor_data(tmp_path: Path, good: Path) -> None:
    data = bytearray(good.read_bytes())
    data[header_end(data) + 10] ^= 0x01  # one bit of one weight
    error = refused(write(tmp_path / "bit.safetensors", bytes(data)), "does not match its checksum")
    assert "XXH3-128" in str(error)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b'"shape":[6,3]', b'"shape":[3,6]'),  # a shape, still valid JSON
        (b'"F32"', b'"I32"'),  # a dtype of the same size
        (b'\\"lr\\":0.0025', b'\\"lr\\":0.0026'),  # a hyperparameter in the metadata
        (b'"epoch\\":2', b'"epoch\\":3'),  # the epoch
    ],
)
def test_an_edited_header_is_detected(tmp_path: Path, good: Path, old: bytes, new: bytes) -> None:
    data = good.read_bytes()
    assert old in data[: header_end(data)], old
    edited = data.replace(old, new, 1)
    refused(write(tmp_path / "edit.safetensors", edited), "damaged")


def test_a_header_that_is_not_json(tmp_path: Path, good: Path) -> None:
    data = bytearray(good.read_bytes())
    data[9] = ord("}")
    refused(write(tmp_path / "json.safetensors", bytes(data)), "not valid JSON")


def test_appended_bytes_are_detected(tmp_path: Path, good: Path) -> None:
    refused(write(tmp_path / "long.safetensors", good.read_bytes() + b"\0" * 8), "damaged")


def test_a_damaged_checksum_field(tmp_path: Path, good: Path) -> None:
    data = good.read_bytes()
    start = data.index(_checksum_of(good).encode())
    edited = data[:start] + (b"f" if data[start : start + 1] != b"f" else b"e") + data[start + 1 :]
    refused(write(tmp_path / "sum.safetensors", edited), "does not match its checksum")


def _checksum_of(path: Path) -> str:
    return container.read_header(path).metadata["flowdl.checksum"]


def test_checkpoint_info_refuses_damaged_data_unless_told_not_to_verify(
    tmp_path: Path, good: Path
) -> None:
    data = bytearray(good.read_bytes())
    data[-1] ^= 0xFF
    path = write(tmp_path / "d.safetensors", bytes(data))
    with pytest.raises(fl.CheckpointError, match="checksum"):
        fl.checkpoint_info(path)
    assert fl.checkpoint_info(path, verify=False).epoch == 2  # the header alone is intact


# ------------------------------------------------------------- another model


def test_a_structural_hash_mismatch_names_both_hashes(tmp_path: Path) -> None:
    fl.save_checkpoint(tmp_path / "small.safetensors", make())
    other = fl.Flow(nn.Linear(3, 7)).through(nn.ReLU()).through(nn.Linear(7, 2)).build()
    before = snapshot(other)
    with pytest.raises(fl.CheckpointError) as caught:
        fl.load_checkpoint(tmp_path / "small.safetensors", other)
    message = str(caught.value)
    assert fl.structural_hash(make()) in message
    assert fl.structural_hash(other) in message
    assert "strict=False" in message
    assert "not in the model (5): BatchNorm1d_0.weight, BatchNorm1d_0.bias," in message
    assert (
        "mismatched (3): Linear_0.weight: checkpoint [6, 3] float32, model [7, 3] float32; "
        "Linear_0.bias: checkpoint [6] float32, model [7] float32; "
    ) in message
    assert_same(snapshot(other), before)


def test_strict_false_loads_what_matches_and_reports_the_rest(tmp_path: Path) -> None:
    source = make()
    fl.save_checkpoint(tmp_path / "s.safetensors", source)
    other = (
        fl.Flow(nn.Linear(3, 6))  # same: Linear_0
        .through(nn.LayerNorm(6))  # LayerNorm_0 instead of BatchNorm1d_0
        .through(nn.ReLU())
        .through(nn.Linear(6, 4))  # Linear_1 with another shape
        .build()
    )
    report = fl.load_checkpoint(tmp_path / "s.safetensors", other, strict=False)
    assert not report.hash_matched
    assert report.loaded == ("Linear_0.weight", "Linear_0.bias")
    assert report.missing == ("LayerNorm_0.weight", "LayerNorm_0.bias")
    assert report.unexpected == tuple(
        f"BatchNorm1d_0.{k}"
        for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    )
    assert [m.name for m in report.mismatched] == ["Linear_1.weight", "Linear_1.bias"]
    assert report.mismatched[0].checkpoint_shape == (2, 6)
    assert report.mismatched[0].model_shape == (4, 6)
    assert torch.equal(other.Linear_0.weight, source.Linear_0.weight)
    assert not report.complete
    assert "missing from the checkpoint: LayerNorm_0.weight" in str(report)


def test_strict_false_into_the_same_model_is_complete(tmp_path: Path, good: Path) -> None:
    report = Trained(seed=1).load(good, strict=False)
    assert report.complete
    assert report.hash_matched


def test_a_change_of_dtype_kind_is_a_mismatch(tmp_path: Path) -> None:
    class Holder(nn.Module):
        def __init__(self, dtype: torch.dtype) -> None:
            super().__init__()
            self.register_buffer("table", torch.arange(4).to(dtype))

    fl.save_checkpoint(tmp_path / "f.safetensors", Holder(torch.float32))
    with pytest.raises(fl.CheckpointError, match="checkpoint \\[4\\] float32, model \\[4\\] int64"):
        fl.load_checkpoint(tmp_path / "f.safetensors", Holder(torch.int64))
    report = fl.load_checkpoint(tmp_path / "f.safetensors", Holder(torch.int64), strict=False)
    assert report.mismatched[0].checkpoint_dtype == torch.float32


def test_a_float64_checkpoint_loads_into_a_float32_model_rounded(tmp_path: Path) -> None:
    source = nn.Linear(2, 2).double()
    with torch.no_grad():
        source.weight.fill_(1 / 3)
    fl.save_checkpoint(tmp_path / "d.safetensors", source)
    target = nn.Linear(2, 2)
    assert fl.load_checkpoint(tmp_path / "d.safetensors", target).complete
    assert target.weight.dtype == torch.float32
    assert torch.equal(target.weight, torch.full((2, 2), 1 / 3, dtype=torch.float32))


def test_tied_weights_that_differ_in_the_checkpoint(tmp_path: Path) -> None:
    def pair(tied: bool) -> nn.Sequential:
        model = nn.Sequential(nn.Linear(3, 3, bias=False), nn.Linear(3, 3, bias=False))
        if tied:
            model[1].weight = model[0].weight
        return model

    fl.save_checkpoint(tmp_path / "untied.safetensors", pair(tied=False))
    tied = pair(tied=True)
    before = snapshot(tied)
    with pytest.raises(fl.CheckpointError, match="tied weights"):
        fl.load_checkpoint(tmp_path / "untied.safetensors", tied)
    assert_same(snapshot(tied), before)


# ------------------------------------------------------- optimizer and scheduler


def test_an_optimizer_of_another_type(good: Path) -> None:
    target = Trained(seed=1)
    sgd = torch.optim.SGD(target.model.parameters(), lr=0.1)
    before = snapshot(target.model, sgd)
    with pytest.raises(fl.CheckpointError, match="state of a Adam, not of a SGD"):
        fl.load_checkpoint(good, target.model, sgd)
    assert_same(snapshot(target.model, sgd), before)


def test_an_optimizer_over_other_parameters(good: Path) -> None:
    target = Trained(seed=1)
    params = list(target.model.parameters())
    for optimizer, match in [
        (torch.optim.Adam(params[:-1]), "group 0 of the optimizer has another number"),
        (torch.optim.Adam(params[::-1]), "parameter 0 of optimizer group 0 is not the one"),
        (torch.optim.Adam([{"params": params[:2]}, {"params": params[2:]}]), "parameter groups"),
    ]:
        before = snapshot(target.model, optimizer)
        with pytest.raises(fl.CheckpointError, match=match):
            fl.load_checkpoint(good, target.model, optimizer)
        assert_same(snapshot(target.model, optimizer), before)


def test_a_checkpoint_without_optimizer_or_scheduler(tmp_path: Path) -> None:
    fl.save_checkpoint(tmp_path / "bare.safetensors", make())
    refused(tmp_path / "bare.safetensors", "has no optimizer state")
    target = Trained(seed=1)
    with pytest.raises(fl.CheckpointError, match="has no scheduler state"):
        fl.load_checkpoint(tmp_path / "bare.safetensors", target.model, None, target.scheduler)


def test_a_scheduler_of_another_type(good: Path) -> None:
    target = Trained(seed=1)
    cosine = lr_scheduler.CosineAnnealingLR(target.optimizer, T_max=4)
    before = target.snapshot()
    with pytest.raises(fl.CheckpointError, match="state of a StepLR, not of a CosineAnnealingLR"):
        fl.load_checkpoint(good, target.model, target.optimizer, cosine)
    assert_same(target.snapshot(), before)


def test_strict_false_refuses_optimizer_state_for_parameters_not_loaded(tmp_path: Path) -> None:
    source = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    opt = torch.optim.Adam(source.parameters())
    train_step(source, opt, (torch.randn(4, 2), torch.randn(4, 1)))
    fl.save_checkpoint(tmp_path / "o.safetensors", source, opt)
    grown = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 2))  # the head changed shape
    grown_opt = torch.optim.Adam(grown.parameters())
    before = snapshot(grown, grown_opt)
    with pytest.raises(fl.CheckpointError, match="is not the one saved there"):
        fl.load_checkpoint(tmp_path / "o.safetensors", grown, grown_opt, strict=False)
    assert_same(snapshot(grown, grown_opt), before)
    report = fl.load_checkpoint(tmp_path / "o.safetensors", grown, strict=False)  # weights only
    assert report.loaded == ("0.weight", "0.bias")


def test_an_unforeseen_failure_while_restoring_undoes_the_optimizer(
    good: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = Trained(seed=1)
    before = target.snapshot()

    def fail(state: dict[str, Any]) -> None:
        raise RuntimeError("scheduler broke")

    monkeypatch.setattr(target.scheduler, "load_state_dict", fail)
    with pytest.raises(fl.CheckpointError, match="scheduler state does not load") as caught:
        target.load(good)
    assert "scheduler broke" in str(caught.value)
    monkeypatch.undo()
    assert_same(target.snapshot(), before)


def test_a_non_module_is_a_type_error(good: Path) -> None:
    with pytest.raises(TypeError, match=r"takes an nn\.Module"):
        fl.load_checkpoint(good, {"weight": torch.ones(1)})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"takes an nn\.Module"):
        fl.save_checkpoint(good, "model")  # type: ignore[arg-type]
