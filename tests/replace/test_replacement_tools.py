"""PyTorch's model conversion tools on built graphs: what they swap in is what runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

import flowdl as fl
from tests.ranks import single_process_group
from tests.replace.test_replacement import replaced_everywhere
from tests.support import assert_same_as_oracle

D = 4


def batchnorm_graph() -> fl.Graph:
    """BatchNorm as a node, inside a loop body, as a gate expert and in a nested graph."""
    inner = fl.Flow(nn.Linear(D, D)).through(nn.BatchNorm1d(D)).label("inner").build()
    return (
        fl.Flow(nn.Linear(D, D))
        .through(nn.BatchNorm1d(D))
        .loop(nn.Sequential(nn.Linear(D, D), nn.BatchNorm1d(D)))
        .for_(2)
        .loop(nn.BatchNorm1d(D))
        .for_(1)
        .gate(fl.SoftmaxRouter(D, 2), nn.BatchNorm1d(D), nn.Tanh())
        .through(inner)
        .build()
        .double()
    )


def batchnorm_oracle(g: fl.Graph) -> Any:
    """What `batchnorm_graph` computes, written out over its (converted) modules."""

    def run(x: Tensor) -> Tensor:
        h = g.BatchNorm1d_0(g.Linear_0(x))
        for _ in range(2):
            h = g.loop_0.body(h)
        h = g.loop_1.body(h)
        w = g.gate_0.router(h)
        h = w[:, :1] * g.gate_0.experts[0](h) + w[:, 1:] * torch.tanh(h)
        inner = g.subgraph("inner")
        return inner.BatchNorm1d_0(inner.Linear_0(h))

    return run


SYNCED = [
    "BatchNorm1d_0",
    "loop_0.body.1",
    "loop_1.body",
    "gate_0.experts.0",
    "inner.BatchNorm1d_0",
]


def count_calls(g: nn.Module, kind: type) -> dict[str, int]:
    calls: dict[str, int] = {}
    for name, module in g.named_modules():
        if isinstance(module, kind):
            calls[name] = 0

            def hook(*_: Any, name: str = name) -> None:
                calls[name] += 1

            module.register_forward_pre_hook(hook)
    return calls


@pytest.mark.parametrize("training", [False, True])
def test_convert_sync_batchnorm_runs_sync_batchnorm_everywhere(training: bool) -> None:
    g = batchnorm_graph()
    g(torch.randn(8, D, dtype=torch.float64))  # running statistics that are not the defaults
    old = count_calls(g, nn.BatchNorm1d)
    assert nn.SyncBatchNorm.convert_sync_batchnorm(g) is g
    assert not any(isinstance(m, nn.BatchNorm1d) for m in g.modules())
    calls = count_calls(g, nn.SyncBatchNorm)
    assert sorted(calls) == sorted(SYNCED)
    g.train(training)
    x = torch.randn(6, D, dtype=torch.float64, requires_grad=True)
    # SyncBatchNorm without a process group normalises like BatchNorm: the same oracle.
    assert_same_as_oracle(g, batchnorm_oracle(g), x)
    assert set(old.values()) == {0}
    assert calls == {
        "BatchNorm1d_0": 2,
        "loop_0.body.1": 4,
        "loop_1.body": 2,
        "gate_0.experts.0": 2,
        "inner.BatchNorm1d_0": 2,
    }  # graph + oracle


def test_sync_batchnorm_under_a_process_group_is_what_the_graph_calls(tmp_path: Path) -> None:
    g = batchnorm_graph()
    nn.SyncBatchNorm.convert_sync_batchnorm(g)
    x = torch.randn(6, D, dtype=torch.float64)
    with single_process_group(tmp_path):
        g.eval()  # eval mode never synchronises: it runs on the CPU
        torch.testing.assert_close(g(x), batchnorm_oracle(g)(x), rtol=0, atol=1e-12)
        g.train()  # training synchronises, which SyncBatchNorm supports on accelerators only
        with pytest.raises(fl.GraphError, match="SyncBatchNorm expected input tensor to be on GPU"):
            g(x)


@pytest.mark.filterwarnings(  # eager-mode quantization is deprecated in favour of torchao
    "ignore:torch.ao.quantization is deprecated:DeprecationWarning",
    "ignore:torch.quantize_per_tensor:UserWarning",
)
def test_quantize_dynamic_runs_the_quantized_linears() -> None:
    g = (
        fl.Flow(nn.Linear(D, D))
        .through(nn.Tanh())
        .loop(nn.Linear(D, D))
        .for_(2)
        .gate(fl.SoftmaxRouter(D, 2), nn.Linear(D, D), nn.Tanh())
        .build()
    )
    q = torch.ao.quantization.quantize_dynamic(g, {nn.Linear}, dtype=torch.qint8)
    dynamic = torch.ao.nn.quantized.dynamic.Linear
    assert isinstance(q.Linear_0, dynamic)
    assert isinstance(q.loop_0.body, dynamic)
    assert isinstance(q.gate_0.experts[0], dynamic)
    assert isinstance(g.Linear_0, nn.Linear)
    x = torch.randn(5, D)

    def oracle(x: Tensor) -> Tensor:
        h = q.loop_0.body(q.loop_0.body(torch.tanh(q.Linear_0(x))))
        w = q.gate_0.router(h)
        return w[:, :1] * q.gate_0.experts[0](h) + w[:, 1:] * torch.tanh(h)

    torch.testing.assert_close(q(x), oracle(x), rtol=0, atol=0)
    assert not torch.equal(q(x), g(x))  # the copy is quantized, the original is not


class Symmetric(nn.Module):
    def forward(self, weight: Tensor) -> Tensor:
        return weight.triu() + weight.triu(1).transpose(-1, -2)


def test_a_parametrized_weight_is_used_without_any_replacement() -> None:
    g = fl.Flow(nn.Linear(D, D).double()).through(nn.Tanh()).build()
    plan = g._plan
    parametrize.register_parametrization(g.Linear_0, "weight", Symmetric())
    assert g._plan is plan  # the module changed class in place; nothing was replaced
    weight = g.Linear_0.parametrizations.weight.original

    def oracle(x: Tensor) -> Tensor:
        return torch.tanh(x @ Symmetric()(weight).T + g.Linear_0.bias)

    assert_same_as_oracle(g, oracle, torch.randn(3, D, dtype=torch.float64, requires_grad=True))


class LoRA(nn.Module):
    """A low-rank adapter around a frozen linear layer, as PEFT wraps one."""

    def __init__(self, base: nn.Linear, rank: int = 2) -> None:
        super().__init__()
        self.base = base.requires_grad_(False)
        self.down = nn.Linear(base.in_features, rank, bias=False).double()
        self.up = nn.Linear(rank, base.out_features, bias=False).double()
        nn.init.normal_(self.up.weight)

    def forward(self, x: Tensor) -> Tensor:
        return self.base(x) + self.up(self.down(x))


def test_lora_wrapping_every_linear_trains_only_the_adapters() -> None:
    g = (
        fl.Flow(nn.Linear(D, D))
        .loop(nn.Linear(D, D))
        .for_(2)
        .switch(fl.FixedSelector(1), nn.Tanh(), nn.Linear(D, D))
        .build()
        .double()
    )
    assert replaced_everywhere(g, nn.Linear, LoRA) == 3
    adapters = [m for m in g.modules() if isinstance(m, LoRA)]
    assert [type(n.module).__name__ for n in g._record.nodes[1:2]] == ["LoRA"]

    def oracle(x: Tensor) -> Tensor:
        h = g.loop_0.body(g.loop_0.body(g.Linear_0(x)))
        return g.switch_0.branches[1](h)

    trainable = [p for p in g.parameters() if p.requires_grad]
    assert len(trainable) == 6
    assert all(
        any(p is q for a in adapters for q in (a.down.weight, a.up.weight)) for p in trainable
    )
    x = torch.randn(4, D, dtype=torch.float64, requires_grad=True)
    assert_same_as_oracle(g, oracle, x, params=trainable)


@pytest.mark.filterwarnings("ignore:torch.ao.quantization is deprecated:DeprecationWarning")
def test_fuse_modules_runs_the_fused_module_and_the_identity_left_for_the_other() -> None:
    g = fl.Flow(nn.Linear(D, D).double()).through(nn.ReLU()).through(nn.Tanh()).build()
    old = g.Linear_0
    torch.ao.quantization.fuse_modules(g, [["Linear_0", "ReLU_0"]], inplace=True)
    assert type(g.Linear_0).__name__ == "LinearReLU"
    assert isinstance(g.ReLU_0, nn.Identity)
    assert g.Linear_0[0] is old
    calls = count_calls(g, nn.Module)
    x = torch.randn(3, D, dtype=torch.float64, requires_grad=True)
    assert_same_as_oracle(g, lambda x: torch.tanh(torch.relu(old(x))), x)
    assert (calls["Linear_0"], calls["ReLU_0"], calls["Linear_0.0"]) == (1, 1, 2)  # + oracle
