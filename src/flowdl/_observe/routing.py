"""Routing, a feature of `fl.Graph`: per-expert and per-branch usage of gates and switches.

`routing` reads how the gate or switch with a tag routed the last forward;
`collect_routing` buffers those figures as metrics (``<tag>/usage/<i>``,
``<tag>/weight/<i>``), which `flush`, `trend` and the monitor then treat like any
other. A gate or switch does nothing for this until the first time its routing is
asked for (see `flowdl._control.routing`).
"""

from __future__ import annotations

from flowdl._control.gate import Gate
from flowdl._control.routing import RoutingUsage, RoutingWatch
from flowdl._control.switch import Switch
from flowdl._executor.core import GraphCore
from flowdl._observe.state import begin_clock
from flowdl._tree.paths import PathError, PathKind, describe_level, resolve

__all__ = ["RoutingObservation"]


class RoutingObservation(GraphCore):
    """`routing` and `collect_routing`."""

    def routing(self, tag: str) -> RoutingUsage | None:
        """How the gate or switch tagged `tag` routed the samples of the last forward.

        The first call starts watching that gate or switch: until then its forward
        keeps nothing for this, and this returns ``None``; from then on each
        forward keeps a reference to the router's weights or the selector's choice,
        and the figures are computed here, when asked. Call it once before
        training to see the first batch. `tag` may be a path into a nested graph
        (``"encoder.moe"``).

        Args:
            tag: the tag of a ``.gate(...)`` or ``.switch(...)`` node.

        Returns:
            a `RoutingUsage` (``fraction`` and, for a gate, ``mean_weight`` per
            expert), or ``None`` before the first watched forward (in this thread).

        Raises:
            KeyError: no such tag (the message lists the tags).
            ValueError: the tag names something other than a gate or a switch.

        Example:
            >>> import torch, flowdl as fl
            >>> from torch import nn
            >>> g = (fl.Flow(nn.Identity())
            ...        .switch(lambda x: (x[:, 0] > 0).long(), nn.Identity(), torch.neg)
            ...        .tag("route").build())
            >>> g.routing("route") is None   # starts watching
            True
            >>> _ = g(torch.tensor([[1.0], [-2.0], [3.0], [4.0]]))
            >>> g.routing("route").fraction
            tensor([0.2500, 0.7500])
        """
        graph, name, node = _routed_node(self, tag, "g.routing()")
        if node._routing is None:
            object.__setattr__(node, "_routing", RoutingWatch())
            return None
        if graph.tagged(name) is None:  # not run (or failed) in this thread
            return None
        return node.routing_usage()

    def collect_routing(self, *tags: str) -> None:
        """Buffer the routing of each gate or switch (`routing`) for this epoch.

        Each expert or branch ``i`` of the node tagged ``moe`` gives the metrics
        ``moe/usage/i`` (`RoutingUsage.fraction`) and, for a gate, ``moe/weight/i``
        (the mean weight), buffered in the graph that holds the tag, on the
        device (no wait). `flush` turns them into epoch means, `trend`/`trends`
        read them, and the monitor and `g.dot()` show them. A node not watched yet
        starts being watched, and gives nothing this time.

        Raises:
            TypeError: no tag given.
            KeyError: no such tag.
            ValueError: a tag names something other than a gate or a switch.

        Example:
            >>> import torch, flowdl as fl
            >>> from torch import nn
            >>> g = fl.Flow(nn.Identity()).gate(fl.SoftmaxRouter(2, 2), nn.Identity(),
            ...                                 torch.neg).tag("moe").build()
            >>> g.collect_routing("moe")          # starts watching
            >>> _ = g(torch.randn(8, 2)); g.collect_routing("moe")
            >>> sorted(g.flush())
            ['moe/usage/0', 'moe/usage/1', 'moe/weight/0', 'moe/weight/1']
        """
        if not tags:
            raise TypeError("g.collect_routing() needs at least one tag, e.g. 'moe'")
        for tag in tags:
            graph, name, _ = _routed_node(self, tag, "g.collect_routing()")
            usage = self.routing(tag)
            if usage is not None:
                store = begin_clock(graph).store
                for metric, value in usage.metrics(name).items():
                    store.add(metric, value)


def _routed_node(root: GraphCore, tag: str, call: str) -> tuple[GraphCore, str, Gate | Switch]:
    """The graph holding `tag`, the tag's local name, and its gate or switch node."""
    target = resolve(root, tag, call, prefer_names=True)
    graph = target.graph
    if target.kind is not PathKind.TAG:
        raise PathError(
            f"{call}: {target.name!r} is a {target.kind.value} of "
            f"{graph.short_description()}; expected the tag of a gate or a switch",
            path=tag,
            exists=describe_level(graph, internal=not target.prefix),
            fix="tag the construct itself: .gate(router, *experts).tag('moe')",
        )
    record = graph._record
    node = record.nodes[record.tags[target.name]].module
    if not isinstance(node, (Gate, Switch)):
        kind = type(node).__name__ if node is not None else "a value"
        raise ValueError(
            f"{call}: the tag {tag!r} names a node of type {kind}, which routes nothing; "
            "routing is measured on the node of a .gate(...) or a .switch(...): tag the "
            "construct itself, e.g. .gate(router, *experts).tag('moe')"
        )
    return graph, target.name, node
