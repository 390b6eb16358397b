"""The structural hash: deterministic, blind to values and labels, sensitive to structure."""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import flowdl as fl
from flowdl._checkpoint.hashing import SCHEME
from tests.checkpoint.helpers import TiedLM, encoder, reused_module_graph, rich_graph
from tests.support import Mix

h = fl.structural_hash
ROOT = Path(__file__).resolve().parents[2]


def test_a_plain_module_hash_is_sha256_of_its_documented_structure() -> None:
    # Independently computed: the scheme, then type, PyTorch's extra_repr, sorted [name, shape]
    # lists, children.
    def expected(payload: object) -> str:
        text = json.dumps([SCHEME, payload], separators=(",", ":"), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    linear = {"type": "Linear", "config": "in_features=2, out_features=3, bias=True",
              "parameters": [["bias", [3]], ["weight", [3, 2]]],
              "buffers": [], "children": []}  # fmt: skip
    relu = {"type": "ReLU", "config": "", "parameters": [], "buffers": [], "children": []}
    sequential = {"type": "Sequential", "config": "", "parameters": [], "buffers": [],
                  "children": [["0", expected(linear)], ["1", expected(relu)]]}  # fmt: skip
    assert h(nn.Linear(2, 3)) == expected(linear)
    assert h(nn.Sequential(nn.Linear(2, 3), nn.ReLU())) == expected(sequential)


def test_the_hash_is_the_same_in_another_process() -> None:
    code = (
        "import torch, flowdl as fl\n"
        "from tests.checkpoint.helpers import rich_graph\n"
        "print(fl.structural_hash(rich_graph()))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert done.stdout.strip() == h(rich_graph())


def test_values_dtypes_devices_and_copies_do_not_change_the_hash() -> None:
    g = rich_graph()
    before = h(g)
    with torch.no_grad():
        for p in g.parameters():
            p.add_(1.0)
    g(torch.randn(4, 3))  # buffers and state move
    assert h(g) == before
    assert h(g.double()) == before
    assert h(g.to("meta")) == before
    assert h(copy.deepcopy(g)) == before


def test_labels_do_not_change_the_hash_but_shapes_types_and_wiring_do() -> None:
    def chain(width: int = 4, act: nn.Module | None = None, label: str | None = None) -> fl.Graph:
        flow = fl.Flow(nn.Linear(2, width)).through(act or nn.ReLU()).through(nn.Linear(width, 1))
        return (flow.label(label) if label else flow).build()

    base = h(chain())
    assert h(chain(label="a")) == h(chain(label="b")) == base
    assert h(chain(width=5)) != base
    assert h(chain(act=nn.GELU())) != base
    residual = fl.Flow(nn.Linear(2, 4)).also(nn.ReLU()).through(nn.Linear(4, 1)).build()
    assert list(residual.state_dict()) == list(chain().state_dict())
    assert h(residual) != base  # same tensors, other wiring (x + relu(x))


def test_tag_names_do_not_change_the_hash() -> None:
    def stateful(tag: str) -> fl.Graph:
        return fl.Flow(nn.Linear(2, 2)).through(Mix(2)).using(tag).tag(tag).build()

    assert h(stateful("memory")) == h(stateful("hidden"))
    plain = fl.Flow(nn.Linear(2, 2)).through(Mix(2)).build()
    assert h(plain) != h(stateful("memory"))  # the state edge is structure


def test_a_shared_module_differs_from_two_modules() -> None:
    twice = reused_module_graph()
    two = fl.Flow(nn.Linear(3, 3)).through(nn.ReLU()).through(nn.Linear(3, 3))
    assert h(twice) != h(two.through(nn.Linear(3, 1)).build())
    assert h(twice) == h(reused_module_graph())


def test_nested_graphs_have_their_own_hash_inside_the_parents() -> None:
    g = rich_graph()
    assert h(g.encoder) == h(encoder())
    changed = (
        fl.Flow(nn.Linear(3, 4))
        .through(nn.BatchNorm1d(4))
        .through(fl.Flow(nn.Linear(4, 4)).through(nn.Sigmoid()).through(Mix(4)).using("memory")
                 .tag("memory").label("encoder").build())
        .build()
    )  # fmt: skip
    same_outer = fl.Flow(nn.Linear(3, 4)).through(nn.BatchNorm1d(4)).through(encoder()).build()
    assert h(changed) != h(same_outer)  # a change inside a nested graph reaches the parent
    assert h(changed.encoder) != h(same_outer.encoder)


def test_a_graph_inside_a_plain_module_is_hashed_as_a_graph() -> None:
    class Holder(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

    assert h(Holder(encoder())) == h(Holder(encoder()))
    assert h(Holder(encoder())) != h(Holder(nn.Linear(4, 4)))


def test_persistent_buffers_count_and_non_persistent_ones_do_not() -> None:
    class Buffers(nn.Module):
        def __init__(self, persistent: bool, size: int = 3) -> None:
            super().__init__()
            self.register_buffer("stats", torch.zeros(size), persistent=persistent)

    assert h(Buffers(persistent=False)) == h(Buffers(persistent=False, size=5))
    assert h(Buffers(persistent=True)) != h(Buffers(persistent=True, size=5))


def test_wrappers_have_the_hash_of_what_they_wrap() -> None:
    model = TiedLM()
    assert h(nn.DataParallel(model)) == h(model)


def test_hash_of_a_non_module_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"takes an nn\.Module"):
        h({"weight": torch.ones(1)})  # type: ignore[arg-type]


# --------------------------------------------- what the computation depends on


def test_loop_counts_limits_and_modes_change_the_hash() -> None:
    def looped(mode: str = "for", n: int = 3) -> fl.Graph:
        body = fl.Flow(nn.Linear(4, 4)).through(nn.Tanh()).build()
        loop = fl.Flow(nn.Linear(4, 4)).loop(body)
        if mode == "for":
            return loop.for_(n).build()
        return getattr(loop, mode)(fl.ThresholdHalt(1.0), n).build()  # type: ignore[no-any-return]

    hashes = {h(looped(mode, n)) for mode in ("for", "while_", "until") for n in (3, 4)}
    assert len(hashes) == 6
    assert h(looped()) == h(looped())


def test_a_routers_k_and_renormalisation_change_the_hash() -> None:
    def gate(router: nn.Module) -> fl.Graph:
        return fl.Flow(nn.Identity()).gate(router, nn.Linear(4, 4), nn.Linear(4, 4)).build()

    routers = [
        fl.TopKRouter(4, 2, k=1),
        fl.TopKRouter(4, 2, k=2),
        fl.TopKRouter(4, 2, k=2, renormalize=False),
        fl.SoftmaxRouter(4, 2),
    ]
    assert len({h(gate(r)) for r in routers}) == len(routers)
    assert h(gate(fl.TopKRouter(4, 2, k=2))) == h(gate(fl.TopKRouter(4, 2, k=2, renormalize=True)))


def test_pytorch_settings_count_and_dtypes_still_do_not() -> None:
    assert h(nn.Conv2d(3, 8, 3, stride=1)) != h(nn.Conv2d(3, 8, 3, stride=2))
    assert h(nn.Dropout(0.1)) != h(nn.Dropout(0.2))
    assert h(nn.Softmax(dim=0)) != h(nn.Softmax(dim=1))
    params = nn.ParameterList([nn.Parameter(torch.ones(2))])  # its repr names the dtype
    before = h(params)
    assert h(params.double()) == before
    norm = nn.BatchNorm1d(4)
    before = h(norm)
    norm.eval()
    norm(torch.randn(3, 4))
    assert h(norm.double()) == before


def test_the_settings_of_your_own_modules_are_not_read() -> None:
    class Scaled(nn.Module):
        def __init__(self, factor: float) -> None:
            super().__init__()
            self.factor = factor
            self.calls = 0

        def forward(self, x: Tensor) -> Tensor:
            self.calls += 1
            return self.factor * x

        def extra_repr(self) -> str:  # may print what changes while training
            return f"factor={self.factor}, calls={self.calls}"

    assert h(Scaled(1.0)) == h(Scaled(2.0))


def test_plain_callables_are_known_by_their_qualified_names_and_partial_arguments() -> None:
    def chain(fn: Any) -> fl.Graph:
        return fl.Flow(nn.Linear(2, 2)).through(fn).build()

    assert h(chain(torch.tanh)) != h(chain(torch.sigmoid))
    assert h(chain(torch.tanh)) != h(chain(nn.Tanh()))
    assert h(chain(functools.partial(torch.softmax, dim=0))) != h(
        chain(functools.partial(torch.softmax, dim=1))
    )
    assert h(chain(torch.tanh)) == h(chain(torch.tanh))


def test_input_names_count_since_inputs_can_be_passed_by_name() -> None:
    def two_inputs(first: str, second: str) -> fl.Graph:
        return fl.Flow(nn.Linear(2, 2)).input(first, second).through(Mix(2)).using(first).build()

    # The same wiring (Mix reads the first auxiliary input), but g(x, a=A, b=B) feeds
    # Mix A in one graph and B in the other.
    assert h(two_inputs("a", "b")) != h(two_inputs("b", "a"))
    assert h(two_inputs("a", "b")) == h(two_inputs("a", "b"))


def test_tag_names_count_for_a_module_that_receives_references_by_name() -> None:
    class Named(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return x

        def forward_named(self, x: Tensor, refs: dict[str, Tensor | None]) -> Tensor:
            value = refs.get("memory")
            return x if value is None else x + value

    def stateful(tag: str) -> fl.Graph:
        return fl.Flow(nn.Linear(2, 2)).through(Named()).using(tag).tag(tag).build()

    assert h(stateful("memory")) != h(stateful("hidden"))  # Named reads refs["memory"]


def test_every_construct_lists_its_settings() -> None:
    from flowdl._checkpoint.hashing import CONSTRUCT_FIELDS
    from flowdl._control.base import ControlNode

    def subclasses(cls: type) -> set[type]:
        found = set(cls.__subclasses__())
        return found.union(*(subclasses(c) for c in found)) if found else found

    assert subclasses(ControlNode) <= set(CONSTRUCT_FIELDS)


def test_declared_initial_values_change_the_hash() -> None:
    def stateful(init: Any = None) -> fl.Graph:
        flow = fl.Flow(nn.Linear(2, 2)).through(Mix(2)).using("m")
        return (flow.tag("m") if init is None else flow.tag("m", init=init)).build()

    inits = [None, (2,), (3,), torch.zeros(1, 2), torch.zeros(2, 2), torch.zeros_like]
    assert len({h(stateful(i)) for i in inits}) == len(inits)


def test_per_sample_inputs_and_shared_tags_change_the_hash() -> None:
    # How a halting loop cuts its references' rows; set on the record as the builder would.
    def graph() -> fl.Graph:
        return (
            fl.Flow(nn.Linear(2, 2)).input("aux").tag("h").through(Mix(2)).using("aux", "h").build()
        )

    base = h(graph())
    per_sample = graph()
    per_sample._record.per_sample_inputs = frozenset({"aux"})
    shared = graph()
    shared._record.shared_tags = frozenset({"h"})
    assert len({base, h(per_sample), h(shared)}) == 3
