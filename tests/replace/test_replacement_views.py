"""After a replacement: fast mode, torch.compile, drawings, repr, the hash, checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

import flowdl as fl
from tests.support import assert_same_as_oracle

D = 4


def lin() -> nn.Linear:
    return nn.Linear(D, D).double()


def x64() -> Tensor:
    return torch.randn(5, D, dtype=torch.float64, requires_grad=True)


# --------------------------------------------------------------- fast mode


def test_a_compiled_graph_compiles_again_with_the_same_options() -> None:
    body = fl.Flow(lin()).through(nn.Tanh()).build()  # inlined in the parent's segment
    g = fl.Flow(lin()).loop(body).for_(2).through(fl.Flow(lin()).build()).build()
    g.compile(backend="aot_eager")
    g(x64())
    new_node, new_inner = lin(), lin()
    g.Linear_0 = new_node
    body.Linear_0 = new_inner
    assert g.compiled
    assert g._fast_options == {"backend": "aot_eager"}
    assert any(step[0] is new_node for item in g._fast for step in getattr(item, "steps", ()))

    def oracle(x: Tensor) -> Tensor:
        h = new_node(x)
        for _ in range(2):
            h = torch.tanh(new_inner(h))
        return g.Graph_0.Linear_0(h)

    assert_same_as_oracle(g, oracle, x64())


def test_a_graph_brought_into_a_compiled_graph_is_compiled_too() -> None:
    g = fl.Flow(lin()).through(fl.StateAdd()).using("s").tag("s").build()
    g.compile(backend="eager")
    stateful = fl.Flow(lin()).through(fl.StateAdd()).using("h").tag("h").build()
    assert not stateful.compiled
    g.Linear_0 = stateful
    assert stateful.compiled
    assert stateful._fast_options == {"backend": "eager"}
    x1, x2 = x64(), x64()
    first = g(x1)
    torch.testing.assert_close(first, stateful.Linear_0(x1), rtol=0, atol=1e-12)
    second = g(x2)
    inner = stateful.Linear_0(x2) + stateful.Linear_0(x1)
    torch.testing.assert_close(second, inner + first, rtol=0, atol=1e-12)


def test_torch_compile_of_the_whole_graph_sees_the_replacement() -> None:
    g = fl.Flow(lin()).through(nn.Tanh()).build()
    compiled = torch.compile(g, backend="eager")
    x = x64()
    torch.testing.assert_close(compiled(x), torch.tanh(g.Linear_0(x)))
    new = lin()
    g.Linear_0 = new
    torch.testing.assert_close(compiled(x), torch.tanh(new(x)), rtol=0, atol=1e-12)


# -------------------------------------------------- what the graph shows


def normed(norm: type[nn.Module]) -> fl.Graph:
    """Normalisation in a node's container, as a loop body, as a gate expert and in a
    nested graph: places whose names do not come from the module's type."""
    inner = fl.Flow(nn.Sequential(nn.Linear(D, D), norm(D))).label("inner")
    return (
        fl.Flow(nn.Sequential(nn.Linear(D, D), norm(D)))
        .loop(norm(D))
        .for_(2)
        .gate(fl.SoftmaxRouter(D, 2), norm(D), nn.Tanh())
        .through(inner)
        .build()
    )


def converted() -> tuple[fl.Graph, fl.Graph]:
    """A graph whose BatchNorms were converted, and the same graph built with SyncBatchNorm."""
    g = normed(nn.BatchNorm1d)
    nn.SyncBatchNorm.convert_sync_batchnorm(g)
    return g, normed(nn.SyncBatchNorm)


def test_repr_dot_and_summary_are_those_of_the_graph_built_with_the_new_modules() -> None:
    g, fresh = converted()
    assert repr(g) == repr(fresh)
    assert "BatchNorm1d" not in repr(g)
    assert g.dot() == fresh.dot()
    assert str(g.summary(depth=None)) == str(fresh.summary(depth=None))


def test_a_replaced_node_keeps_its_name_and_shows_its_new_module() -> None:
    g = fl.Flow(nn.Linear(D, D)).through(nn.BatchNorm1d(D)).build()
    keys = list(g.state_dict())
    nn.SyncBatchNorm.convert_sync_batchnorm(g)
    assert list(g.state_dict()) == keys  # names are where a module is registered
    row = next(line for line in str(g.summary()).splitlines() if "BatchNorm1d_0" in line)
    assert row.split()[:2] == ["BatchNorm1d_0", "SyncBatchNorm"]
    assert 'tooltip="BatchNorm1d_0: SyncBatchNorm(' in g.dot()
    assert ".through(SyncBatchNorm(4, eps=" in repr(g)


def test_the_structural_hash_is_that_of_the_graph_built_with_the_new_modules() -> None:
    before = fl.structural_hash(normed(nn.BatchNorm1d))
    g, fresh = converted()
    assert fl.structural_hash(g) == fl.structural_hash(fresh) != before
    same_shape = normed(nn.BatchNorm1d)
    same_shape.loop_0.body = nn.BatchNorm1d(D)  # values are not structure
    assert fl.structural_hash(same_shape) == before
    same_shape.loop_0.body = nn.BatchNorm1d(D, affine=False)
    assert fl.structural_hash(same_shape) != before


def test_a_checkpoint_of_a_converted_graph_fits_the_graph_built_converted(tmp_path: Path) -> None:
    g, fresh = converted()
    g(torch.randn(6, D))  # running statistics
    path = tmp_path / "converted.safetensors"
    fl.save_checkpoint(path, g)
    report = fl.load_checkpoint(path, fresh)
    assert not report.missing
    assert not report.unexpected
    assert not report.mismatched
    for (name, a), (_, b) in zip(g.state_dict().items(), fresh.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    g.eval(), fresh.eval()
    x = torch.randn(3, D)
    torch.testing.assert_close(fresh(x), g(x), rtol=0, atol=0)
    with pytest.raises(fl.CheckpointError, match="structural hashes differ"):
        fl.load_checkpoint(path, normed(nn.BatchNorm1d))


def test_a_graph_inside_a_plain_container_tells_the_compiled_graph_holding_it() -> None:
    inner = fl.Flow(lin()).through(nn.Tanh()).build()
    g = fl.Flow(lin()).through(nn.Sequential(inner, nn.Tanh())).build()
    g.compile(backend="eager")
    g(x64())
    segments = g._fast
    stateful = fl.Flow(lin()).through(fl.StateAdd()).using("h").tag("h").build()
    inner.Linear_0 = stateful  # heard through the nn.Sequential
    assert g._fast is not segments
    assert stateful.compiled
    assert g._nested_cells == (stateful._plan.cells["h"],)
    x = x64()
    torch.testing.assert_close(
        g(x), torch.tanh(torch.tanh(stateful.Linear_0(g.Linear_0(x)))), rtol=0, atol=1e-12
    )
