"""Control flow in the builder: `loop`, `gate`, `switch` and `map`.

Each construct becomes one node whose module (`flowdl._control`) runs its inner
modules; `using` after a construct feeds its references to the inner callable
that takes them (loop body, router, selector, map body).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from flowdl._builder.core import FlowCore, NodeLike, builder_call
from flowdl._builder.open_builders import LoopBuilder, MapBuilder
from flowdl._control.base import ControlNode
from flowdl._control.gate import Gate
from flowdl._control.switch import Switch
from flowdl._describe import describe_module, plural
from flowdl._errors import BuildError
from flowdl._ir.contracts import check_choices, check_fixed_selector, check_stream_only
from flowdl._ir.nodes import BuilderCall, NodeKind

C = TypeVar("C", bound="ControlMixin")


class ControlMixin(FlowCore):
    """The builder calls that route, repeat and map."""

    @builder_call
    def loop(self, body: NodeLike) -> LoopBuilder:
        """Repeat `body` on the stream; finish with ``.for_(n)``, ``.while_`` or ``.until``.

        ``state = body(state, *refs)`` at each iteration; backward runs through all
        of them. References from a following `using` reach the body at every
        iteration (positionally, or by name through ``forward_named``). A body
        with a ``trace()`` method is traced (`Graph.traces`); ``reset()`` of the
        body and the condition is called before every forward. The graph's
        context is checked between iterations.

        Args:
            body: a module, callable or unbuilt `Flow` mapping the state to the next.

        Returns:
            a `LoopBuilder`: call one of its terminators to get the flow back.

        Example:
            >>> import torch, flowdl as fl
            >>> g = fl.Flow(torch.nn.Identity()).loop(lambda x: 2 * x).for_(3).build()
            >>> g(torch.tensor([1.0, 2.0]))
            tensor([ 8., 16.])
        """
        call, fn = self._open_construct("loop", body)
        return LoopBuilder(self, call, fn)  # type: ignore[arg-type]

    @builder_call
    def map(self, body: NodeLike) -> MapBuilder:
        """Apply `body` row by row; finish with ``.each()``, ``.over(tag)`` or ``.slices(n)``.

        ``.batched()`` before the terminator calls the body once on all rows.

        Args:
            body: a module, callable or unbuilt `Flow` applied to each ``[1, ...]`` row.

        Returns:
            a `MapBuilder`: call one of its terminators to get the flow back.

        Example:
            >>> import torch, flowdl as fl
            >>> g = fl.Flow(torch.nn.Identity()).map(lambda row: row * row.sum()).each().build()
            >>> g(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
            tensor([[ 3.,  6.],
                    [21., 28.]])
        """
        call, fn = self._open_construct("map", body)
        return MapBuilder(self, call, fn)  # type: ignore[arg-type]

    @builder_call
    def gate(self: C, router: NodeLike, *experts: NodeLike) -> C:
        """Soft routing (mixture of experts): ``sum_i w[:, i] * expert_i(x)``, ``w = router(x)``.

        The router returns ``[B, n]`` weights for the ``n`` experts; the gate does
        not normalise them (use `fl.SoftmaxRouter`, `fl.SigmoidRouter`, or
        `fl.TopKRouter` to run each expert only on the samples routed to it). A
        following `using` feeds the router; experts see the stream only.

        Args:
            router: returns ``[B, n]`` weights for the ``n`` experts.
            *experts: two or more modules, callables or unbuilt flows.

        Returns:
            a new flow; the flow it is called on is unchanged.

        Raises:
            BuildError: fewer than two experts, open branches, or a built-in router
                made for another number of experts.

        Example:
            >>> import torch, flowdl as fl
            >>> from torch import nn
            >>> g = (fl.Flow(nn.Linear(4, 8))
            ...        .gate(fl.SoftmaxRouter(8, 3), nn.Linear(8, 8), nn.Tanh(), nn.Identity())
            ...        .build())
            >>> g(torch.randn(5, 4)).shape
            torch.Size([5, 8])
        """
        call = self._begin("gate", (router, *experts))
        stream = self._single_stream(call)
        fn = self._node_callable(router, call)
        fns = self._check_alternatives(call, "expert", experts)
        check_choices(call, fn, "router", len(fns), "expert")
        self._calls.append(call)
        return self._add_construct("gate", Gate(fn, fns), [stream], call)

    @builder_call
    def switch(self: C, selector: NodeLike, *branches: NodeLike) -> C:
        """Hard routing: only the selected branch runs, for the whole batch or per sample.

        ``selector(x)`` returns an int (the whole batch takes that branch) or a
        ``[B]`` integer tensor (each sample takes its own; each branch runs once on
        its samples and the outputs are put back in batch order). A following
        `using` feeds the selector; branches see the stream only.

        Args:
            selector: returns an int, or a ``[B]`` integer tensor.
            *branches: two or more modules, callables or unbuilt flows.

        Returns:
            a new flow; the flow it is called on is unchanged.

        Raises:
            BuildError: fewer than two branches, open branches, or a built-in
                selector made for another number of branches.

        Example:
            >>> import torch, flowdl as fl
            >>> g = (fl.Flow(torch.nn.Identity())
            ...        .switch(lambda x: (x[:, 0] > 0).long(), lambda x: -x, lambda x: 10 * x)
            ...        .build())
            >>> g(torch.tensor([[1.0], [-2.0], [3.0]]))
            tensor([[10.],
                    [ 2.],
                    [30.]])
        """
        call = self._begin("switch", (selector, *branches))
        stream = self._single_stream(call)
        fn = self._node_callable(selector, call)
        fns = self._check_alternatives(call, "branch", branches)
        check_choices(call, fn, "selector", len(fns), "branch")
        check_fixed_selector(call, fn, len(fns))
        self._calls.append(call)
        return self._add_construct("switch", Switch(fn, fns), [stream], call)

    # ------------------------------------------------------------- internals

    def _open_construct(self, method: str, body: NodeLike) -> tuple[BuilderCall, Any]:
        call = self._begin(method, (body,))
        self._single_stream(call)
        fn = self._node_callable(body, call)
        self._calls.append(call)
        self._open = call
        return call, fn

    def _add_construct(self: C, base: str, module: ControlNode, inputs: list[int], call: Any) -> C:
        node = self._add_node(
            NodeKind.MODULE, base, call, module=module, inputs=inputs, ref_target=module.receiver
        )
        self._streams = [node]
        self._targets = [node]
        return self

    def _check_alternatives(
        self, call: BuilderCall, what: str, given: Sequence[NodeLike]
    ) -> list[Callable[..., Any]]:
        """Experts or branches: at least two, each a callable taking the stream alone."""
        plural_what = "experts" if what == "expert" else "branches"
        if len(given) < 2:
            raise BuildError(
                f"{call.name} needs at least 2 {plural_what}, got {len(given)}",
                call=str(call),
                expected=f"the {call.method} first, then two or more {plural_what}",
                received=plural(len(given), what, "s" if what == "expert" else "es"),
                fix="for a single module use .through(module)",
            )
        fns = [self._node_callable(m, call) for m in given]
        for i, fn in enumerate(fns):
            check_stream_only(fn, f"{what} {i} of {call.name} ({describe_module(fn)})", call)
        return fns
