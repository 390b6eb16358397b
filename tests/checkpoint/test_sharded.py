"""Sharded checkpoints in one process (no process group): round trip, safety, refusals.

The two-rank runs (FSDP2, resharding, resume) are in tests/distributed/test_fsdp.py.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import flowdl as fl
from tests.ranks import single_process_group


def make(seed: int = 0, width: int = 6) -> fl.Graph:
    torch.manual_seed(seed)
    return (
        fl.Flow(nn.Linear(3, width))
        .through(nn.BatchNorm1d(width))  # an integer buffer: num_batches_tracked
        .through(nn.ReLU())
        .through(nn.Linear(width, 2))
        .build()
        .double()
    )


def trained(seed: int = 0) -> tuple[fl.Graph, torch.optim.Adam]:
    model = make(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01, betas=(0.8, 0.9))
    generator = torch.Generator().manual_seed(seed)
    for _ in range(2):
        x = torch.randn(5, 3, generator=generator, dtype=torch.float64)
        loss = model(x).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model, optimizer


def state(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    tensors = list(model.state_dict().values())
    for p in model.parameters():
        tensors += [v for v in optimizer.state.get(p, {}).values() if isinstance(v, torch.Tensor)]
    return [t.clone() for t in tensors]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(
        x.dtype == y.dtype and torch.equal(x, y) for x, y in zip(a, b, strict=True)
    )


def test_round_trip_restores_model_optimizer_epoch_and_extras(tmp_path: Path) -> None:
    model, optimizer = trained()
    fl.save_sharded_checkpoint(tmp_path / "run", model, optimizer, epoch=4, pair=(1, "a"))
    fresh = make(seed=1)
    fresh_optimizer = torch.optim.Adam(fresh.parameters(), lr=0.5)
    report = fl.load_sharded_checkpoint(tmp_path / "run", fresh, fresh_optimizer)
    assert same(state(fresh, fresh_optimizer), state(model, optimizer))
    assert fresh_optimizer.param_groups[0]["lr"] == 0.01
    assert fresh_optimizer.param_groups[0]["betas"] == (0.8, 0.9)  # a tuple again
    assert report.complete
    assert report.epoch == 4
    assert report.extra == {"epoch": 4, "pair": [1, "a"]}  # JSON: tuples come back as lists
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "flowdl.json",
        "shard-00001-model-00001-of-00001.safetensors",
    ]


def test_loading_never_unpickles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, optimizer = trained()
    fl.save_sharded_checkpoint(tmp_path / "run", model, optimizer)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a checkpoint load unpickled something")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(torch, "load", refuse)
    fresh = make(seed=1)
    fresh_optimizer = torch.optim.Adam(fresh.parameters())
    fl.load_sharded_checkpoint(tmp_path / "run", fresh, fresh_optimizer)
    assert same(state(fresh, fresh_optimizer), state(model, optimizer))


def test_consolidate_writes_one_ordinary_checkpoint(tmp_path: Path) -> None:
    model, optimizer = trained()
    fl.save_sharded_checkpoint(tmp_path / "run", model, optimizer, epoch=2, note="n")
    plain, plain_optimizer = make(seed=3), None
    plain_optimizer = torch.optim.Adam(plain.parameters())
    fl.consolidate_checkpoint(tmp_path / "run", tmp_path / "m.safetensors", plain, plain_optimizer)
    served = make(seed=4)
    served_optimizer = torch.optim.Adam(served.parameters())
    report = fl.load_checkpoint(tmp_path / "m.safetensors", served, served_optimizer)
    assert (report.epoch, report.extra["note"]) == (2, "n")
    assert same(state(served, served_optimizer), state(model, optimizer))


def test_saving_again_replaces_the_checkpoint_and_a_leftover(tmp_path: Path) -> None:
    leftover = tmp_path / ".run.flowdl-saving"
    leftover.mkdir()
    (leftover / "shard-00009-model-00001-of-00001.safetensors").write_bytes(b"partial")
    fl.save_sharded_checkpoint(tmp_path / "run", make(seed=0), epoch=1)
    second = make(seed=1)
    fl.save_sharded_checkpoint(tmp_path / "run", second, epoch=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    fresh = make(seed=2)
    assert fl.load_sharded_checkpoint(tmp_path / "run", fresh).epoch == 2
    assert same(
        state(fresh, torch.optim.SGD(fresh.parameters())),
        state(second, torch.optim.SGD(second.parameters())),
    )


def test_a_folder_of_something_else_is_not_replaced(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    with pytest.raises(fl.CheckpointError, match="is not a sharded checkpoint"):
        fl.save_sharded_checkpoint(tmp_path / "run", make())
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"


def test_unstorable_extra_is_refused_before_writing(tmp_path: Path) -> None:
    with pytest.raises(fl.CheckpointError, match="cannot be stored") as caught:
        fl.save_sharded_checkpoint(tmp_path / "run", make(), note=object())
    assert "the extras['note']" in str(caught.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda text: "{not json", "is not JSON"),
        (lambda text: "[" * 100_000 + "]" * 100_000, "is not JSON"),
        (lambda text: text.replace('"version": 1', '"version": "1"'), "field version"),
        (lambda text: text.replace('"version": 1', '"version": 2'), "format version 2"),
        (lambda text: text.replace('"epoch": 3', '"epoch": [3]'), "field epoch"),
        (lambda text: text.replace('"model": [', '"model": [7, '), r"field model\[...\]"),
        (lambda text: text.replace('"type": "Adam"', '"type": 5'), "field optimizer.type"),
        (lambda text: text.replace('"world_size": 1', '"world_size": true'), "world_size"),
    ],
)
def test_a_damaged_document_is_refused_changing_nothing(
    tmp_path: Path, edit: Any, message: str
) -> None:
    model, optimizer = trained()
    fl.save_sharded_checkpoint(tmp_path / "run", model, optimizer, epoch=3)
    document = tmp_path / "run" / "flowdl.json"
    original = json.dumps(json.loads(document.read_text()))  # ", " and ": " separators
    document.write_text(edit(original))
    fresh = make(seed=1)
    fresh_optimizer = torch.optim.Adam(fresh.parameters())
    before = state(fresh, fresh_optimizer)
    with pytest.raises(fl.CheckpointError, match=message):
        fl.load_sharded_checkpoint(tmp_path / "run", fresh, fresh_optimizer)
    assert same(state(fresh, fresh_optimizer), before)
    assert not fresh_optimizer.state


def test_missing_or_damaged_shards_are_refused(tmp_path: Path) -> None:
    fl.save_sharded_checkpoint(tmp_path / "run", make())
    shard = tmp_path / "run" / "shard-00001-model-00001-of-00001.safetensors"
    shard.write_bytes(shard.read_bytes()[:40])
    with pytest.raises(fl.CheckpointError, match="damaged"):
        fl.load_sharded_checkpoint(tmp_path / "run", make(seed=1))
    shard.unlink()
    with pytest.raises(fl.CheckpointError, match="no shard holds"):
        fl.load_sharded_checkpoint(tmp_path / "run", make(seed=1))


def test_paths_that_are_not_sharded_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(fl.CheckpointError, match="no such folder"):
        fl.load_sharded_checkpoint(tmp_path / "nothing", make())
    fl.save_checkpoint(tmp_path / "one.safetensors", make())
    with pytest.raises(fl.CheckpointError, match=r"fl\.load_checkpoint"):
        fl.load_sharded_checkpoint(tmp_path / "one.safetensors", make())


def test_another_model_or_optimizer_is_refused_changing_nothing(tmp_path: Path) -> None:
    model, optimizer = trained()
    fl.save_sharded_checkpoint(tmp_path / "run", model, optimizer)
    wider = make(seed=1, width=7)
    before = state(wider, torch.optim.SGD(wider.parameters()))
    with pytest.raises(fl.CheckpointError, match="structural hashes differ"):
        fl.load_sharded_checkpoint(tmp_path / "run", wider)
    assert same(state(wider, torch.optim.SGD(wider.parameters())), before)
    report = fl.load_sharded_checkpoint(tmp_path / "run", wider, strict=False)
    assert not report.hash_matched
    assert report.loaded == ("BatchNorm1d_0.num_batches_tracked", "Linear_1.bias")
    assert {m.name for m in report.mismatched} >= {"Linear_0.weight", "BatchNorm1d_0.weight"}
    fresh = make(seed=2)
    sgd = torch.optim.SGD(fresh.parameters(), lr=0.1, momentum=0.9)
    with pytest.raises(fl.CheckpointError, match="state of a Adam, not of a SGD"):
        fl.load_sharded_checkpoint(tmp_path / "run", fresh, sgd)
    assert not sgd.state


def test_a_ddp_wrapped_model_saves_without_the_module_prefix(tmp_path: Path) -> None:
    model, optimizer = trained()
    with single_process_group(tmp_path):
        ddp = DistributedDataParallel(model)
        fl.save_sharded_checkpoint(tmp_path / "run", ddp, optimizer, epoch=1)
    fresh = make(seed=1)
    fresh_optimizer = torch.optim.Adam(fresh.parameters())
    assert fl.load_sharded_checkpoint(tmp_path / "run", fresh, fresh_optimizer).complete
    assert same(state(fresh, fresh_optimizer), state(model, optimizer))


def test_an_interrupted_swap_names_the_previous_checkpoint(tmp_path: Path) -> None:
    fl.save_sharded_checkpoint(tmp_path / "run", make())
    (tmp_path / "run").rename(tmp_path / ".run.flowdl-replaced")  # killed between renames
    with pytest.raises(fl.CheckpointError, match=r"the previous checkpoint is .*replaced"):
        fl.load_sharded_checkpoint(tmp_path / "run", make())
