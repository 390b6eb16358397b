"""`fl.Graph`: the roof. The one place that names every feature of a graph.

`GraphCore` (``flowdl._executor.core``) runs the plan; each feature is a class built
on it, in its own package, and none of them imports this file. To add a feature,
write it as a subclass of `GraphCore` (or of the feature it builds on) and add it to
the bases below; see ``docs/architecture.md``.
"""

from __future__ import annotations

from flowdl._draw.drawing import Drawing
from flowdl._observe.observation import Observation
from flowdl._observe.routing import RoutingObservation
from flowdl._observe.timing_trends import TimingTrends
from flowdl._observe.trends import Trends
from flowdl._replace.replacement import Replacement
from flowdl._tree.tree import Tree

__all__ = ["Graph"]


class Graph(Replacement, Drawing, TimingTrends, Trends, Observation, RoutingObservation, Tree):
    """A built flow: an `nn.Module` running the nodes of the chain in a fixed plan.

    Build one with `fl.Flow(...).build()`. Its submodules are the modules of the
    chain (each registered once, under its node id such as ``Linear_0``), so
    `parameters()`, `state_dict()`, `.to()`, `.train()` / `.eval()`, `copy.deepcopy`,
    DDP and `torch.compile` behave as for any module. Replacing a submodule
    (``add_module``, ``setattr``, ``nn.SyncBatchNorm.convert_sync_batchnorm``) also
    replaces it in the plan, in loops, gates, switches and maps, at any depth.

    Call it as ``g(x, *aux, ctx=None)``: ``x`` feeds the entry module, ``aux`` the
    names given to `Flow.input`, in order; ``ctx`` (an `fl.Context`) bounds the
    call in time and lets another thread cancel it.

    Tags read before they are defined carry state from one call to the next. That
    state is stored detached from autograd, so a plain training loop never
    backpropagates into an earlier call; set ``g.backprop_state = True`` to keep the
    history (truncated backpropagation through time) and call `detach_state()` where
    the history should be cut.

    What a graph can do beyond running comes from its features: observation and
    progress (`collect`, `record`, `flush`, `eta`...), routing of gates and switches
    (`routing`, `collect_routing`), trends (`trend`, `trends`),
    timing trends (`collect_timings`...), drawing (`dot`, `svg`, `summary`),
    profiling (`enable_profiling`, `profile`), the tree (`subgraph`, `freeze`...)
    and replacing submodules.

    Example:
        >>> import torch, flowdl as fl
        >>> from torch import nn
        >>> g = fl.Flow(nn.Linear(2, 4)).through(nn.ReLU()).tag("hidden").build()
        >>> [name for name, _ in g.named_parameters()]
        ['Linear_0.weight', 'Linear_0.bias']
        >>> y = g(torch.randn(3, 2))
        >>> g.tagged("hidden").shape
        torch.Size([3, 4])
    """
