"""The module protocols of `flowdl.protocols`, and when the graph calls them."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import flowdl as fl
from flowdl import protocols


class Resets(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[int, torch.device]] = []

    def reset(self, batch_size: int, device: torch.device) -> None:
        self.calls.append((batch_size, device))

    def forward(self, x: Tensor) -> Tensor:
        return x


def test_reset_is_called_once_per_forward_per_module() -> None:
    shared = Resets()
    g = fl.Flow(shared).through(nn.ReLU()).through(shared).build()
    g(torch.zeros(7, 2))
    g(torch.zeros(3, 2))
    assert shared.calls == [(7, torch.device("cpu")), (3, torch.device("cpu"))]


def test_reset_in_a_nested_graph_is_called_by_that_graph() -> None:
    module = Resets()
    inner = fl.Flow(module).build()
    outer = fl.Flow(nn.Identity()).through(inner).through(inner).build()
    outer(torch.zeros(4, 1))
    assert module.calls == [(4, torch.device("cpu"))] * 2


def test_forward_named_receives_references_by_tag() -> None:
    received: list[dict[str, Tensor]] = []

    class Named(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return -x

        def forward_named(self, x: Tensor, refs: dict[str, Tensor]) -> Tensor:
            received.append(refs)
            return x + refs["a"] * refs["b"]

    g = (
        fl.Flow(nn.Identity())
        .tag("a")
        .through(lambda x: x + 1)
        .tag("b")
        .through(Named())
        .using("b", "a")
        .through(Named())
        .build()
    )
    assert g(torch.tensor(2.0)).item() == -(3.0 + 2.0 * 3.0)  # second Named has no refs: forward
    assert list(received[0]) == ["b", "a"]


def test_protocols_are_runtime_checkable() -> None:
    assert isinstance(Resets(), protocols.Resettable)
    assert not isinstance(nn.Linear(1, 1), protocols.Resettable)
    assert not isinstance(nn.Linear(1, 1), protocols.NamedInputModule)

    class Everything:
        def trace(self) -> Tensor:
            return torch.zeros(1)

        def ref_names(self) -> list[str]:
            return []

        def detach_state(self) -> None:
            pass

        def initial_state(self, ref: str, stream: Tensor) -> None:
            return None

    thing = Everything()
    for proto in (
        protocols.Traced,
        protocols.RefValidator,
        protocols.Detachable,
        protocols.InitialState,
    ):
        assert isinstance(thing, proto)


def test_a_failing_reset_names_the_node() -> None:
    class BadReset(nn.Module):
        def reset(self, batch_size: int, device: torch.device) -> None:
            raise RuntimeError(f"cannot reset for {batch_size}")

        def forward(self, x: Tensor) -> Tensor:
            return x

    g = fl.Flow(nn.Identity()).through(BadReset()).tag("out").build()
    with pytest.raises(fl.GraphError) as info:
        g(torch.zeros(3, 1))
    assert info.value.node_id == "BadReset_0"
    assert info.value.problem == (
        "BadReset_0.reset(batch_size=3, device=cpu) raised RuntimeError: cannot reset for 3"
    )
    assert isinstance(info.value.__cause__, RuntimeError)
