"""A built `Graph` behaves as any `nn.Module`: parameters, state_dict, .to(), modes, copies."""

from __future__ import annotations

import copy
import io
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

import flowdl as fl
from tests.ranks import single_process_group
from tests.support import Mix


def make() -> fl.Graph:
    return (
        fl.Flow(nn.Linear(3, 8))
        .through(nn.LayerNorm(8))
        .tag("hidden")
        .split(nn.Linear(8, 8), nn.Linear(8, 8))
        .merge(fl.Mean())
        .through(nn.Dropout(0.5))
        .through(Mix(8))
        .using("state")
        .tag("state")
        .through(nn.Linear(8, 2))
        .build()
    )


def test_parameters_are_registered_once_in_creation_order() -> None:
    g = make()
    names = [name for name, _ in g.named_parameters()]
    assert names == [
        "Linear_0.weight", "Linear_0.bias", "LayerNorm_0.weight", "LayerNorm_0.bias",
        "Linear_1.weight", "Linear_1.bias", "Linear_2.weight", "Linear_2.bias",
        "Mix_0.main.weight", "Mix_0.main.bias", "Mix_0.ref.weight", "Mix_0.ref.bias",
        "Linear_3.weight", "Linear_3.bias",
    ]  # fmt: skip
    assert names == [name for name, _ in make().named_parameters()]  # deterministic


def test_shared_module_is_counted_once() -> None:
    shared = nn.Linear(4, 4)
    g = (
        fl.Flow(shared)
        .through(nn.ReLU())
        .through(shared)
        .split(shared, nn.Linear(4, 4))
        .merge(fl.Add())
        .build()
    )
    params = list(g.parameters())
    assert len(params) == 4
    assert len({id(p) for p in params}) == 4
    assert list(dict(g.named_children())) == ["Linear_0", "ReLU_0", "Linear_3", "Add_0"]


def test_state_dict_round_trip_into_a_fresh_graph() -> None:
    torch.manual_seed(1)
    a = make().eval()
    torch.manual_seed(2)
    b = make().eval()
    x = torch.randn(4, 3)
    assert not torch.allclose(a(x), b(x))
    a.reset_state()
    b.load_state_dict(a.state_dict())
    b.reset_state()
    torch.testing.assert_close(b(x), a(x))
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    c = make().eval()
    c.load_state_dict(torch.load(buffer, weights_only=True))
    a.reset_state()
    torch.testing.assert_close(c(x), a(x))


def test_state_is_not_in_the_state_dict() -> None:
    g = make()
    g(torch.randn(2, 3))
    assert all("state" not in key for key in g.state_dict())


def test_train_and_eval_reach_every_node() -> None:
    g = make()
    g.eval()
    assert all(not m.training for m in g.modules())
    x = torch.randn(4, 3)
    g.reset_state()
    first = g(x)
    g.reset_state()
    torch.testing.assert_close(g(x), first)
    g.train()
    assert all(m.training for m in g.modules())


def test_dropout_in_a_nested_graph_follows_eval() -> None:
    inner = fl.Flow(nn.Dropout(0.99)).build()
    g = fl.Flow(nn.Identity()).through(inner).build()
    g.eval()
    x = torch.ones(100)
    torch.testing.assert_close(g(x), x)
    g.train()
    assert not torch.equal(g(x), x)


def test_to_dtype_moves_parameters_and_state() -> None:
    g = make()
    g(torch.randn(2, 3))
    g.double()
    assert all(p.dtype == torch.float64 for p in g.parameters())
    assert g.tagged("state").dtype == torch.float32  # the last call's tap is untouched
    out = g(torch.randn(2, 3, dtype=torch.float64))  # state was converted, so this works
    assert out.dtype == torch.float64


def test_deepcopy_is_independent() -> None:
    g = make().eval()
    x = torch.randn(2, 3)
    g(x)
    clone = copy.deepcopy(g)
    torch.testing.assert_close(clone(x), g(x))  # same weights, same state
    with torch.no_grad():
        for p in clone.parameters():
            p.add_(1.0)
    assert not torch.allclose(clone(x), g(x))
    clone.reset_state()
    assert g._plan.cells["state"].value is not None


def test_pickling_the_whole_module() -> None:
    g = make().eval()
    buffer = io.BytesIO()
    torch.save(g, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    x = torch.randn(2, 3)
    g.reset_state()
    torch.testing.assert_close(loaded(x), g(x))


def test_repr_reads_like_the_builder_chain() -> None:
    inner = fl.Flow(nn.ReLU()).label("act").build()
    g = fl.Flow(nn.Linear(2, 2)).through(inner).tag("out").build()
    assert repr(g) == (
        "Graph(\n"
        "  fl.Flow(Linear(in_features=2, out_features=2, bias=True))\n"
        "  .through(\n"
        "    Graph[act](\n"
        "      fl.Flow(ReLU())\n"
        "      .label('act')\n"
        "      .build()\n"
        "    )\n"
        "  )\n"
        "  .tag('out')\n"
        "  .build()\n"
        ")"
    )


def test_levels_and_description() -> None:
    g = fl.Flow(nn.Identity()).split(nn.ReLU(), nn.Tanh()).merge(fl.Add()).build()
    assert g.levels == (("input",), ("Identity_0",), ("ReLU_0", "Tanh_0"), ("Add_0",))
    assert g.short_description() == "Graph(5 nodes)"
    assert g.n_inputs == 1


def test_graph_cannot_be_constructed_directly() -> None:
    with pytest.raises(TypeError, match=r"fl.Flow\(module\)...build\(\)"):
        fl.Graph(None)  # type: ignore[arg-type]


def test_tagged_unknown_tag_lists_tags() -> None:
    g = make()
    with pytest.raises(KeyError, match="its tags are: hidden, state"):
        g.tagged("hiden")
    assert g.tagged("hidden") is None  # before any call


def test_torch_compile_gives_the_same_result_without_graph_breaks() -> None:
    g = make().eval()
    x = torch.randn(4, 3)
    g.reset_state()
    want = [g(x), g(x)]
    g.reset_state()
    compiled = torch.compile(g, backend="eager", fullgraph=True)
    got = [compiled(x), compiled(x)]
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b)


def test_nested_graph_in_a_user_module_and_functional_call() -> None:
    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = fl.Flow(nn.Linear(2, 2)).through(nn.Tanh()).build()

        def forward(self, x: Tensor) -> Tensor:
            return self.body(x).sum()

    model = Model()
    params = {k: torch.zeros_like(v) for k, v in model.named_parameters()}
    assert torch.func.functional_call(model, params, (torch.ones(1, 2),)).item() == 0.0
    assert [k for k, _ in model.named_parameters()] == [
        "body.Linear_0.weight",
        "body.Linear_0.bias",
    ]


def test_to_device_moves_parameters_and_state() -> None:
    g = fl.Flow(nn.Linear(2, 2)).through(fl.StateAdd()).using("s").tag("s").build()
    g(torch.ones(1, 2))
    g.to("meta")  # a device every machine has
    assert all(p.device.type == "meta" for p in g.parameters())
    assert g._plan.cells["s"].value.device.type == "meta"
    assert g(torch.ones(1, 2, device="meta")).device.type == "meta"


def test_distributed_data_parallel_wraps_a_graph(tmp_path: Path) -> None:
    with single_process_group(tmp_path):
        g = make()
        ddp = nn.parallel.DistributedDataParallel(g)
        opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
        for _ in range(3):
            loss = ddp(torch.randn(4, 3)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        assert all(p.grad is not None for p in g.parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_forward_backward_and_state() -> None:
    g = make().cuda()
    x = torch.randn(4, 3, device="cuda")
    g(x).sum().backward()
    assert g._plan.cells["state"].value.device.type == "cuda"
    assert all(p.grad is not None and p.grad.is_cuda for p in g.parameters())
    g.cpu()
    assert g._plan.cells["state"].value.device.type == "cpu"
