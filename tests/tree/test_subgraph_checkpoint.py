"""`g.load_subgraph_checkpoint`: a nested graph's checkpoint loads into it, and only it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

import flowdl as fl


def make_scan(width: int = 4) -> fl.Graph:
    return fl.Flow(nn.Linear(width, width)).through(nn.Tanh()).tag("hidden").label("scan").build()


def make_encoder(width: int = 4) -> fl.Graph:
    """A nested graph with parameters, buffers (batch norm) and a nested graph of its own."""
    return (
        fl.Flow(nn.Linear(3, width))
        .through(nn.BatchNorm1d(width))
        .loop(make_scan(width))
        .for_(2)
        .label("encoder")
        .build()
    )


def make_model(width: int = 4) -> fl.Graph:
    """Batch norm and linears around the encoder: the parts that must stay as they were."""
    return (
        fl.Flow(nn.Linear(3, 3))
        .through(nn.BatchNorm1d(3))
        .through(make_encoder(width))
        .through(nn.Linear(width, 2))
        .tag("head")
        .build()
    )


def train(model: nn.Module, steps: int = 3) -> None:
    """A few SGD steps in training mode: parameters and running statistics move."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    for _ in range(steps):
        loss = model(torch.randn(8, 3)).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def state(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_identical(got: dict[str, Tensor], want: dict[str, Tensor]) -> None:
    assert list(got) == list(want)
    for key in want:
        assert got[key].dtype == want[key].dtype, key
        assert torch.equal(got[key], want[key]), key


def test_a_trained_encoder_loads_into_another_model_and_nothing_else_changes(
    tmp_path: Path,
) -> None:
    source = make_model()
    train(source)
    file = tmp_path / "encoder.safetensors"
    fl.save_checkpoint(file, source.subgraph("encoder"))
    target = make_model()
    train(target, steps=2)
    before = state(target)
    report = target.load_subgraph_checkpoint("encoder", file)
    encoder_keys = list(make_encoder().state_dict())
    assert report.loaded == tuple(encoder_keys)  # the encoder's own namespace
    assert report.complete
    assert report.hash_matched
    after = state(target)
    wanted = state(source)
    for key in after:
        if key.startswith("encoder."):
            assert torch.equal(after[key], wanted[key]), key  # the source's encoder
        else:
            assert torch.equal(after[key], before[key]), key  # the rest: bit for bit
    assert {k for k in after if k.startswith("encoder.")} == {f"encoder.{k}" for k in encoder_keys}
    assert any("running_mean" in k and not k.startswith("encoder.") for k in after)
    assert not torch.equal(before["encoder.Linear_0.weight"], wanted["encoder.Linear_0.weight"])


def test_an_encoder_trained_alone_loads_into_the_nested_one(tmp_path: Path) -> None:
    alone = make_encoder()
    train(nn.Sequential(alone, nn.Linear(4, 1)))
    fl.save_checkpoint(tmp_path / "alone.safetensors", alone, epoch=4)
    model = make_model()
    report = model.load_subgraph_checkpoint("encoder", tmp_path / "alone.safetensors")
    assert report.epoch == 4
    x = torch.randn(5, 3)
    alone.eval()
    model.eval()
    assert torch.equal(model.subgraph("encoder")(x), alone(x))


def test_a_deeper_path_reaches_the_graph_it_names(tmp_path: Path) -> None:
    scan = make_scan()
    with torch.no_grad():
        for parameter in scan.parameters():
            parameter.add_(1.0)
    fl.save_checkpoint(tmp_path / "scan.safetensors", scan)
    model = make_model()
    before = state(model)
    report = model.load_subgraph_checkpoint("encoder.scan", tmp_path / "scan.safetensors")
    assert report.loaded == ("Linear_0.weight", "Linear_0.bias")
    after = state(model)
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert changed == {"encoder.loop_0.body.Linear_0.weight", "encoder.loop_0.body.Linear_0.bias"}
    assert torch.equal(after["encoder.loop_0.body.Linear_0.weight"], scan.Linear_0.weight)


def refusals(tmp_path: Path) -> list[tuple[str, Path, str]]:
    """``(path in tree, file, words of the error)`` for loads that must change nothing."""
    wider = make_encoder(width=6)
    fl.save_checkpoint(tmp_path / "wider.safetensors", wider)
    fl.save_checkpoint(tmp_path / "whole.safetensors", make_model())
    good = tmp_path / "good.safetensors"
    fl.save_checkpoint(good, make_encoder())
    damaged = bytearray(good.read_bytes())
    damaged[-5] ^= 0x10
    (tmp_path / "damaged.safetensors").write_bytes(bytes(damaged))
    (tmp_path / "short.safetensors").write_bytes(good.read_bytes()[:-100])
    return [
        ("encoder", tmp_path / "wider.safetensors", "structural hashes differ"),
        ("encoder", tmp_path / "whole.safetensors", "structural hashes differ"),
        ("encoder.scan", good, "structural hashes differ"),
        ("encoder", tmp_path / "damaged.safetensors", "damaged"),
        ("encoder", tmp_path / "short.safetensors", "truncated"),
        ("encoder", tmp_path / "missing.safetensors", "no checkpoint at this path"),
    ]


def test_a_refused_load_changes_nothing(tmp_path: Path) -> None:
    model = make_model()
    train(model)
    before = state(model)
    for path_in_tree, file, words in refusals(tmp_path):
        with pytest.raises(fl.CheckpointError, match=words):
            model.load_subgraph_checkpoint(path_in_tree, file)
        assert_identical(state(model), before)


def test_the_hash_mismatch_names_the_nested_graph_and_both_hashes(tmp_path: Path) -> None:
    fl.save_checkpoint(tmp_path / "wider.safetensors", make_encoder(width=6))
    model = make_model()
    with pytest.raises(fl.CheckpointError) as error:
        model.load_subgraph_checkpoint("encoder", tmp_path / "wider.safetensors")
    message = str(error.value)
    child_hash = fl.structural_hash(model.subgraph("encoder"))
    assert f"structural hash {child_hash} (the nested graph at 'encoder')" in message
    assert fl.structural_hash(make_encoder(width=6)) in message
    assert "Linear_0.weight: checkpoint [6, 3] float32, model [4, 3] float32" in message


def test_strict_false_loads_what_matches_and_reports_the_rest(tmp_path: Path) -> None:
    other = (
        fl.Flow(nn.Linear(3, 4))
        .through(nn.BatchNorm1d(4))
        .loop(fl.Flow(nn.Linear(4, 4)).through(nn.ReLU()).label("scan").build())
        .for_(3)
        .through(nn.Linear(4, 4))  # an extra node: another hash, and an unexpected key
        .label("encoder")
        .build()
    )
    train(nn.Sequential(other, nn.Linear(4, 1)))
    fl.save_checkpoint(tmp_path / "other.safetensors", other)
    model = make_model()
    before = state(model)
    report = model.load_subgraph_checkpoint("encoder", tmp_path / "other.safetensors", strict=False)
    assert not report.hash_matched
    assert report.unexpected == ("Linear_1.weight", "Linear_1.bias")
    assert report.missing == ()
    assert report.mismatched == ()
    assert report.loaded == tuple(make_encoder().state_dict())
    after = state(model)
    saved = other.state_dict()
    for key, value in after.items():
        if key.startswith("encoder."):
            assert torch.equal(value, saved[key.removeprefix("encoder.")]), key
        else:
            assert torch.equal(value, before[key]), key


def test_paths_are_checked_first_with_the_trees_errors(tmp_path: Path) -> None:
    model = make_model()
    missing = tmp_path / "missing.safetensors"
    with pytest.raises(KeyError, match=r"g\.load_subgraph_checkpoint\(\): no 'decoder'") as error:
        model.load_subgraph_checkpoint("decoder", missing)
    assert type(error.value).__name__ == "PathError"
    assert "exists: Graph(5 nodes) has nested graphs: encoder; tags: head" in str(error.value)
    with pytest.raises(KeyError, match="no nested graph 'scann' in Graph 'encoder'"):
        model.load_subgraph_checkpoint("encoder.scann.x", missing)
    with pytest.raises(KeyError, match=r"'head' is a tag of Graph.*not a nested graph"):
        model.load_subgraph_checkpoint("head", missing)
    with pytest.raises(ValueError, match="is not a path"):
        model.load_subgraph_checkpoint("encoder..scan", missing)


def test_a_tensor_shared_with_the_rest_of_the_model_changes_everywhere(tmp_path: Path) -> None:
    shared = nn.Linear(4, 4)
    inner = fl.Flow(shared).through(nn.Tanh()).label("inner").build()
    model = fl.Flow(nn.Linear(4, 4)).through(inner).through(shared).build()
    fresh = fl.Flow(nn.Linear(4, 4)).through(nn.Tanh()).label("inner").build()
    fl.save_checkpoint(tmp_path / "inner.safetensors", fresh)
    model.load_subgraph_checkpoint("inner", tmp_path / "inner.safetensors")
    assert torch.equal(shared.weight, fresh.Linear_0.weight)  # one tensor, used twice
