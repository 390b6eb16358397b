"""Interop with plain safetensors: flowdl's files load in plain PyTorch, and plain weights
files (Hugging Face hub style) load with `fl.load_checkpoint`."""

from __future__ import annotations

from pathlib import Path

import pytest
import safetensors.torch
import torch
from torch import nn

import flowdl as fl


class Plain(nn.Module):
    """The graph below written in plain PyTorch, with the same state-dict names."""

    def __init__(self) -> None:
        super().__init__()
        self.Linear_0 = nn.Linear(3, 5)
        self.BatchNorm1d_0 = nn.BatchNorm1d(5)
        self.Linear_1 = nn.Linear(5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.Linear_1(torch.relu(self.BatchNorm1d_0(self.Linear_0(x))))


def graph(seed: int) -> fl.Graph:
    torch.manual_seed(seed)
    return (
        fl.Flow(nn.Linear(3, 5))
        .through(nn.BatchNorm1d(5))
        .through(nn.ReLU())
        .through(nn.Linear(5, 2))
        .build()
    )


def trained(seed: int) -> tuple[fl.Graph, torch.optim.Optimizer]:
    model = graph(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    for _ in range(2):
        optimizer.zero_grad()
        model(torch.randn(8, 3)).square().mean().backward()
        optimizer.step()
    return model, optimizer


def test_a_checkpoint_loads_into_the_same_network_written_in_plain_pytorch(
    tmp_path: Path,
) -> None:
    model, optimizer = trained(0)
    path = tmp_path / "graph.safetensors"
    fl.save_checkpoint(path, model, optimizer, epoch=2)
    plain = Plain()
    tensors = safetensors.torch.load_file(path)
    plain.load_state_dict({k: v for k, v in tensors.items() if k in plain.state_dict()})
    model.eval()
    plain.eval()
    x = torch.randn(4, 3)
    assert torch.equal(plain(x), model(x))
    others = {k for k in tensors if k not in plain.state_dict()}
    assert others  # Adam's moments are there too, under flowdl's own namespace
    assert all(k.startswith("__flowdl__/optimizer/") for k in others)


def test_plain_safetensors_weights_load_into_a_matching_graph(tmp_path: Path) -> None:
    plain = Plain()
    with torch.no_grad():
        for p in plain.parameters():
            p.uniform_(-1, 1)
    path = tmp_path / "model.safetensors"
    safetensors.torch.save_file(plain.state_dict(), path, metadata={"format": "pt"})
    target = graph(1)
    report = fl.load_checkpoint(path, target)
    assert report.complete
    assert set(report.loaded) == set(plain.state_dict())
    assert not report.hash_matched  # a plain file has no structural hash to compare
    assert report.epoch is None
    assert report.extra == {}
    for key, value in plain.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_plain_weights_that_do_not_match_are_refused_or_reported(tmp_path: Path) -> None:
    weights = {k: v for k, v in Plain().state_dict().items() if k != "Linear_1.bias"}
    weights["head.weight"] = torch.ones(2, 2)
    path = tmp_path / "model.safetensors"
    safetensors.torch.save_file(weights, path)
    target = graph(1)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(fl.CheckpointError, match="do not match the model") as caught:
        fl.load_checkpoint(path, target)
    assert "Linear_1.bias" in str(caught.value)
    assert "head.weight" in str(caught.value)
    for key, value in target.state_dict().items():
        assert torch.equal(value, before[key])
    report = fl.load_checkpoint(path, target, strict=False)
    assert report.missing == ("Linear_1.bias",)
    assert report.unexpected == ("head.weight",)
    assert torch.equal(target.state_dict()["Linear_1.bias"], before["Linear_1.bias"])


def test_a_damaged_plain_file_is_a_checkpoint_error(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    safetensors.torch.save_file(Plain().state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[:-3])
    with pytest.raises(fl.CheckpointError, match="truncated"):
        fl.load_checkpoint(path, graph(1))


def test_a_model_key_in_flowdls_namespace_is_refused_at_save(tmp_path: Path) -> None:
    model = nn.Module()
    model.add_module("__flowdl__/optimizer", nn.Linear(1, 1))  # "/" is allowed in names
    with pytest.raises(fl.CheckpointError, match="starts with '__flowdl__/'"):
        fl.save_checkpoint(tmp_path / "x.safetensors", model)
    assert list(tmp_path.iterdir()) == []


def test_optimizer_state_mapped_from_the_file_never_writes_to_it(tmp_path: Path) -> None:
    model, optimizer = trained(0)
    path = tmp_path / "m.safetensors"
    fl.save_checkpoint(path, model, optimizer)
    data = path.read_bytes()
    saved = {k: v.clone() for k, v in optimizer.state_dict()["state"][0].items()}
    target = graph(1)
    target_optimizer = torch.optim.Adam(target.parameters(), lr=0.1)
    fl.load_checkpoint(path, target, target_optimizer)
    for _ in range(2):  # Adam updates its moments in place
        target_optimizer.zero_grad()
        target(torch.randn(8, 3)).square().mean().backward()
        target_optimizer.step()
    assert not torch.equal(target_optimizer.state_dict()["state"][0]["exp_avg"], saved["exp_avg"])
    assert path.read_bytes() == data  # the file is as it was saved
    fresh = graph(1)
    again = torch.optim.Adam(fresh.parameters(), lr=0.1)
    fl.load_checkpoint(path, fresh, again)
    assert torch.equal(again.state_dict()["state"][0]["exp_avg"], saved["exp_avg"])


def test_the_checksum_covers_every_chunk_of_a_file_of_several_chunks(tmp_path: Path) -> None:
    model = nn.Linear(2100, 2100)  # about 17 MiB: two chunks of the checksum
    path = tmp_path / "big.safetensors"
    fl.save_checkpoint(path, model)
    data = bytearray(path.read_bytes())
    assert len(data) > (16 << 20)
    target = nn.Linear(2100, 2100)
    fl.load_checkpoint(path, target)
    assert torch.equal(target.weight, model.weight)
    for position in (len(data) - 5, (16 << 20) + 100):
        damaged = bytearray(data)
        damaged[position] ^= 0x10
        path.write_bytes(bytes(damaged))
        with pytest.raises(fl.CheckpointError, match="does not match its checksum"):
            fl.load_checkpoint(path, target)
