"""Parameters by path, freezing through real optimizer steps, training modes by path."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import flowdl as fl


def model() -> fl.Graph:
    torch.manual_seed(0)
    encoder = (
        fl.Flow(nn.Linear(4, 8))
        .through(nn.BatchNorm1d(8))
        .tag("norm")
        .through(nn.ReLU())
        .tag("act")
        .label("encoder")
        .build()
    )
    return (
        fl.Flow(encoder)
        .also(nn.Linear(8, 8))
        .tag("residual")
        .split(nn.Linear(8, 2), nn.Linear(8, 2))
        .tag_group("head")
        .merge(fl.Add())
        .through(lambda x: x * 1.0)
        .tag("scaled")
        .build()
    )


def snapshot(params: list[nn.Parameter]) -> list[torch.Tensor]:
    return [p.detach().clone() for p in params]


def train(g: fl.Graph, optimizer: torch.optim.Optimizer, steps: int, set_to_none: bool) -> None:
    torch.manual_seed(1)
    for _ in range(steps):
        x = torch.randn(16, 4)
        loss = g(x).pow(2).mean()
        optimizer.zero_grad(set_to_none=set_to_none)
        loss.backward()
        optimizer.step()


@pytest.mark.parametrize(
    "make_optimizer",
    [
        lambda ps: torch.optim.Adam(ps, lr=0.1, weight_decay=0.1),
        lambda ps: torch.optim.AdamW(ps, lr=0.1, weight_decay=0.1),
        lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.1),
    ],
)
@pytest.mark.parametrize("set_to_none", [True, False])
def test_frozen_parameters_stay_bit_identical_through_optimizer_steps(
    make_optimizer: object, set_to_none: bool
) -> None:
    g = model()
    optimizer = make_optimizer(g.parameters())  # type: ignore[operator]
    train(g, optimizer, 2, set_to_none)  # momentum and gradients exist before the freeze
    frozen = g.parameters_at("encoder")
    others = [p for p in g.parameters() if all(p is not f for f in frozen)]
    g.freeze("encoder")
    assert all(p.grad is None for p in frozen)
    before, others_before = snapshot(frozen), snapshot(others)
    train(g, optimizer, 3, set_to_none)
    for p, b in zip(frozen, before, strict=True):
        assert torch.equal(p, b)
        assert p.grad is None
    assert all(not torch.equal(p, b) for p, b in zip(others, others_before, strict=True))
    g.thaw("encoder")
    train(g, optimizer, 1, set_to_none)
    assert all(not torch.equal(p, b) for p, b in zip(frozen, before, strict=True))


def test_freeze_by_tag_group_and_residual_tag() -> None:
    g = model()
    g.freeze("head")
    heads = g.parameters_at("head")
    assert len(heads) == 4
    assert g.is_frozen("head")
    assert g.is_frozen("head_0")
    assert g.is_frozen("head_1")
    assert not g.is_frozen("encoder")
    g.thaw("head_1")
    assert not g.is_frozen("head")  # only partly frozen
    residual = g.parameters_at("residual")  # the module that .also() adds
    assert [tuple(p.shape) for p in residual] == [(8, 8), (8,)]
    g.freeze("residual", "encoder.norm")
    assert g.is_frozen("residual")
    assert g.is_frozen("encoder.norm")
    assert not g.is_frozen("encoder")


def test_gradients_do_not_reach_frozen_parameters() -> None:
    g = model()
    g.freeze("encoder")
    g(torch.randn(8, 4)).sum().backward()
    assert all(p.grad is None for p in g.parameters_at("encoder"))
    assert all(p.grad is not None for p in g.parameters_at("head"))


def test_paths_without_parameters() -> None:
    g = model()
    for call in (g.freeze, g.thaw, g.is_frozen):
        with pytest.raises(ValueError, match="'scaled' has no parameters"):
            call("scaled")
        with pytest.raises(ValueError, match=r"'encoder\.act' has no parameters"):
            call("encoder.act")
    with pytest.raises(TypeError, match="needs at least one path"):
        g.freeze()
    assert g.parameters_at("scaled") == []


def test_named_parameters_at_use_the_target_namespace() -> None:
    g = model()
    encoder = g.subgraph("encoder")
    names = [n for n, _ in g.named_parameters_at("encoder")]
    assert names == [n for n, _ in encoder.named_parameters()]
    assert names == [
        "Linear_0.weight",
        "Linear_0.bias",
        "BatchNorm1d_0.weight",
        "BatchNorm1d_0.bias",
    ]
    assert [n for n, _ in g.named_parameters_at("head")] == [
        "head_0.weight",
        "head_0.bias",
        "head_1.weight",
        "head_1.bias",
    ]
    assert [n for n, _ in g.named_parameters_at("encoder.norm")] == ["weight", "bias"]
    assert [n for n, _ in g.named_buffers_at("encoder")] == [
        "BatchNorm1d_0.running_mean",
        "BatchNorm1d_0.running_var",
        "BatchNorm1d_0.num_batches_tracked",
    ]
    # a standalone copy of the subgraph loads what named_parameters_at gives
    alone = copy.deepcopy(encoder)
    with torch.no_grad():
        for p in alone.parameters():
            p.zero_()
    state = dict(g.named_parameters_at("encoder")) | dict(g.named_buffers_at("encoder"))
    alone.load_state_dict(state)
    x = torch.randn(5, 4)
    alone.eval(), encoder.eval()
    torch.testing.assert_close(alone(x), encoder(x))


def test_parameters_at_counts_shared_parameters_once() -> None:
    shared = nn.Linear(2, 2)
    block = fl.Flow(shared).through(shared).label("block").build()
    g = fl.Flow(block).build()
    assert len(g.parameters_at("block")) == 2


def test_set_training_at() -> None:
    g = model()
    g.set_training_at("encoder", False)
    encoder = g.subgraph("encoder")
    assert g.training
    assert not encoder.training
    assert all(not m.training for m in encoder.modules())
    x = torch.randn(8, 4)
    stats = encoder.get_submodule("BatchNorm1d_0").running_mean.clone()
    g(x)
    assert torch.equal(encoder.get_submodule("BatchNorm1d_0").running_mean, stats)
    g.set_training_at("encoder.norm", True)
    assert encoder.get_submodule("BatchNorm1d_0").training
    g.set_training_at("head", False)
    assert not g.get_submodule("Linear_1").training
    with pytest.raises(ValueError, match="no module there"):
        g.set_training_at("scaled", False)
    g.train()
    assert all(m.training for m in g.modules())


def test_freezing_survives_copies_and_the_state_dict_is_unchanged() -> None:
    g = model()
    keys = list(g.state_dict())
    g.freeze("encoder")
    assert list(g.state_dict()) == keys
    clone = copy.deepcopy(g)
    assert clone.is_frozen("encoder")
    assert not clone.is_frozen("head")
