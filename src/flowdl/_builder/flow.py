"""`fl.Flow`: the fluent builder. It records what the user wrote; `build()` plans it."""

from __future__ import annotations

from typing import Any, NoReturn

from flowdl._builder.control import ControlMixin
from flowdl._builder.core import NodeLike, builder_call, not_built
from flowdl._builder.naming import NamingMixin
from flowdl._builder.references import ReferencesMixin
from flowdl._describe import plural
from flowdl._errors import BuildError
from flowdl._graph import Graph
from flowdl._ir.contracts import check_node_module, check_state_consumer
from flowdl._ir.nodes import NodeKind
from flowdl._tree.children import check_children


class Flow(NamingMixin, ReferencesMixin, ControlMixin):
    """Build a graph by chaining calls; `build()` turns the chain into an `fl.Graph`.

    A flow is a value: every call returns a new `Flow` and leaves the one it is
    called on unchanged, so a model reads top to bottom and a prefix can be shared.
    Extending one trunk twice gives two graphs holding the same trunk modules
    (modules are never copied: training one trains the trunk of the other). Keep
    what each call returns (``flow = flow.through(m)`` in a loop): a result dropped
    unused is refused at the next call on the flow, rather than built without.

    Mistakes raise `fl.BuildError` at the call that makes them, or at `build()` for
    what can only be seen on the whole graph (open branches, tags never defined,
    modules fed the wrong inputs).

    Modules passed to the builder become submodules of the graph; plain callables
    are only called, so a callable that uses a module's weights (a lambda, a bound
    method) does not bring them into ``parameters()``: pass the module itself.

    Args:
        module: the entry node; it receives the graph's first input. Any `nn.Module`
            or callable taking tensors, or another `Flow` (built on the spot).

    Example:
        >>> import torch, flowdl as fl
        >>> from torch import nn
        >>> g = (fl.Flow(nn.Linear(2, 16))
        ...        .through(nn.GELU())
        ...        .also(nn.Linear(16, 16))      # residual: x + m(x)
        ...        .through(nn.Linear(16, 2))
        ...        .build())
        >>> g(torch.randn(8, 2)).shape
        torch.Size([8, 2])

        A shared prefix:

        >>> trunk = fl.Flow(nn.Linear(2, 8)).through(nn.ReLU())
        >>> small = trunk.through(nn.Linear(8, 1)).build()
        >>> large = trunk.through(nn.Linear(8, 4)).build()
        >>> small.Linear_0 is large.Linear_0, trunk
        (True, <unbuilt fl.Flow(Linear(in_features=2, out_features=8, bias=True)).through(ReLU())>)
    """

    def __init__(self, module: NodeLike) -> None:
        self._start(module)

    @builder_call
    def through(self, module: NodeLike) -> Flow:
        """Append a module to the stream: ``x -> module(x)``.

        Args:
            module: any `nn.Module`, callable taking tensors, or unbuilt `Flow`.

        Returns:
            a new flow; the flow it is called on is unchanged.

        Raises:
            BuildError: open branches (call `merge` first), or a module that is not
                a module, a callable or a flow.

        Example:
            >>> import torch, flowdl as fl
            >>> g = fl.Flow(torch.nn.Linear(3, 3)).through(torch.relu).build()
            >>> bool((g(torch.randn(4, 3)) >= 0).all())
            True
        """
        call = self._begin("through", (module,))
        stream = self._single_stream(call)
        fn = self._node_callable(module, call)
        self._calls.append(call)
        node = self._add_module(fn, [stream], call)
        self._streams = [node]
        self._targets = [node]
        return self

    @builder_call
    def also(self, module: NodeLike) -> Flow:
        """Add a residual connection: ``x -> x + module(x)``.

        A following `using` feeds the references to `module`; a following `tag`
        names the sum.

        Args:
            module: a module, callable or unbuilt flow, shaped like its input.

        Returns:
            a new flow; the flow it is called on is unchanged.

        Raises:
            BuildError: open branches (call `merge` first).

        Example:
            >>> import torch, flowdl as fl
            >>> g = fl.Flow(torch.nn.Identity()).also(lambda x: 2 * x).build()
            >>> g(torch.tensor([1.0, 3.0]))
            tensor([3., 9.])
        """
        call = self._begin("also", (module,))
        stream = self._single_stream(call)
        fn = self._node_callable(module, call)
        self._calls.append(call)
        inner = self._add_module(fn, [stream], call)
        add = self._add_node(NodeKind.RESIDUAL, "add", call, inputs=[stream, inner], n_stream=2)
        self._streams = [add]
        self._targets = [inner]
        return self

    @builder_call
    def fork(self, module: NodeLike) -> Flow:
        """Run a side branch ``module(x)`` and keep ``x`` as the stream.

        The side output must be named by a `tag` right after (after `using`, if the
        module takes references); read it with `using` or `Graph.tagged`.

        Args:
            module: a module, callable or unbuilt flow; a following `tag` names its
                output.

        Returns:
            a new flow; the flow it is called on is unchanged.

        Raises:
            BuildError: open branches (call `merge` first).

        Example:
            >>> import torch, flowdl as fl
            >>> g = (fl.Flow(torch.nn.Identity())
            ...        .fork(lambda x: x.sum(-1, keepdim=True)).tag("total")
            ...        .through(lambda x, total: x / total).using("total")
            ...        .build())
            >>> g(torch.tensor([[1.0, 3.0]]))
            tensor([[0.2500, 0.7500]])
        """
        call = self._begin("fork", (module,))
        stream = self._single_stream(call)
        fn = self._node_callable(module, call)
        self._calls.append(call)
        side = self._add_module(fn, [stream], call)
        self._targets = [side]
        self._pending_fork = side
        return self

    @builder_call
    def split(self, *modules: NodeLike) -> Flow:
        """Open parallel branches, each applying one module to the same input.

        Combine them with `merge`; name them with `tag_group`; a `using` right
        after feeds the references to every branch.

        Args:
            *modules: two or more modules (or callables), one per branch.

        Returns:
            a new flow; the flow it is called on is unchanged.

        Raises:
            BuildError: fewer than two modules, or open branches already.

        Example:
            >>> import torch, flowdl as fl
            >>> g = (fl.Flow(torch.nn.Identity())
            ...        .split(lambda x: x + 1, lambda x: 2 * x).merge(fl.Add())
            ...        .build())
            >>> g(torch.tensor([1.0, 2.0]))
            tensor([4., 7.])
        """
        call = self._begin("split", modules)
        stream = self._single_stream(call)
        if len(modules) < 2:
            raise BuildError(
                "an empty .split() has no branches"
                if not modules
                else ".split() needs at least 2 branches, got 1",
                call=str(call),
                expected="two or more modules, one per parallel branch",
                received=plural(len(modules), "module"),
                fix="for a single module use .through(module); for a residual use .also(module)",
            )
        fns = [self._node_callable(m, call) for m in modules]
        self._calls.append(call)
        self._streams = [self._add_module(fn, [stream], call) for fn in fns]
        self._targets = list(self._streams)
        self._split_call = call
        return self

    @builder_call
    def merge(self, op: NodeLike) -> Flow:
        """Combine the open branches with ``op(branch_0, branch_1, ...)``.

        Args:
            op: `fl.Add()`, `fl.Mean()`, `fl.Cat(dim)`, or any module or callable
                taking the branch outputs positionally (and then any references).

        Returns:
            a new flow; the flow it is called on is unchanged.

        Raises:
            BuildError: no open branches (a single stream).

        Example:
            >>> import torch, flowdl as fl
            >>> g = (fl.Flow(torch.nn.Identity())
            ...        .split(torch.nn.Identity(), torch.nn.Identity()).merge(fl.Cat(dim=-1))
            ...        .build())
            >>> g(torch.ones(2, 3)).shape
            torch.Size([2, 6])
        """
        call = self._begin("merge", (op,))
        if len(self._streams) < 2:
            raise BuildError(
                ".merge() needs several branches to combine, got a single stream",
                call=str(call),
                expected="two or more open branches from .split(...)",
                received="one stream",
                fix="open branches with .split(a, b, ...) before .merge(...), or use "
                ".through(op) to apply op to the single stream",
            )
        fn = self._node_callable(op, call)
        self._calls.append(call)
        branches = list(self._streams)
        node = self._add_module(fn, branches, call, NodeKind.MERGE, n_stream=len(branches))
        self._streams = [node]
        self._targets = [node]
        self._split_call = None
        return self

    def build(self) -> Graph:
        """Check the whole graph and compile it into an `fl.Graph` (an `nn.Module`).

        Returns:
            the graph, ready to call.

        Raises:
            BuildError: open branches, an unnamed fork, a tag that is never defined,
                a module that would be fed inputs it does not accept, or two nested
                graphs with one label (also inside loops, gates, switches and maps).

        Example:
            >>> import torch, flowdl as fl
            >>> g = fl.Flow(torch.nn.Linear(4, 2)).build()
            >>> isinstance(g, torch.nn.Module), sum(p.numel() for p in g.parameters())
            (True, 10)
        """
        self._check_derived("build")
        call = self._begin("build", ())
        if len(self._streams) > 1:
            n = len(self._streams)
            raise BuildError(
                f"cannot build with {n} open branches from .split(); call .merge(...) first",
                call=str(call),
                expected="one stream: the graph's output",
                received=f"{n} branches opened by {self._split_call}",
                fix="combine them with .merge(fl.Add()), .merge(fl.Cat(dim=-1)), ...",
            )
        if self._pending_refs:
            self._raise_unresolved()
        for node in self._nodes:
            if node.module is not None:
                check_node_module(node)
            if node.kind is NodeKind.STATE_READ and node.consumer is not None:
                check_state_consumer(node, self._nodes[node.consumer])
        graph = Graph(self._record())
        check_children(graph, str(call))
        return graph

    def __call__(self, *args: Any, **kwargs: Any) -> NoReturn:
        """An unbuilt flow is not a module: calling it is a `BuildError` saying to build it.

        Example:
            >>> import torch, flowdl as fl
            >>> fl.Flow(torch.nn.Identity())(torch.zeros(2))
            Traceback (most recent call last):
            ...
            flowdl._errors.BuildError: an unbuilt fl.Flow cannot be called: call .build() first
            ...
        """
        raise not_built(self, args)

    def __repr__(self) -> str:
        chain = "".join(c.text for c in self._calls)
        return f"<unbuilt {chain}>"


__all__ = ["Flow", "NodeLike"]
