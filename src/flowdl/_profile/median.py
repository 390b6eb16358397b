"""The median of several profiles: what ``Graph.profile(runs=N)`` and the heat map show.

One forward's timings carry the scheduler's noise: a node that waited for a core
looks slow. The median over N forwards, per node, per level and for the total, keeps
what is typical; the node's first and third quartiles (`NodeTiming.spread`) say how
much it varied.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from flowdl._profile.profile import LevelTiming, NodeTiming, Profile

__all__ = ["median_profile"]


def median_profile(profiles: Sequence[Profile]) -> Profile:
    """The profile whose every figure is the median of `profiles`' (all of one plan).

    Args:
        profiles: at least one profile, each with the same nodes and levels.

    Returns:
        the first profile itself for one profile; else a `Profile` with
        ``runs=len(profiles)``, the median of each node's, level's and total
        duration, and each node's quartiles as its ``spread``.

    Raises:
        ValueError: no profiles, or profiles of different plans.

    Example:
        >>> def one(seconds):
        ...     node = NodeTiming("Linear_0", (), seconds, 1)
        ...     return Profile(seconds, (LevelTiming(1, seconds, seconds, 1),), (node,))
        >>> p = median_profile([one(1.0), one(2.0), one(9.0), one(3.0)])
        >>> p.runs, p.total_seconds, p.nodes[0].seconds, p.nodes[0].spread
        (4, 2.5, 2.5, (1.75, 4.5))
    """
    if not profiles:
        raise ValueError("median_profile() needs at least one profile")
    first = profiles[0]
    if len(profiles) == 1:
        return first
    shape = [(n.id, n.level) for n in first.nodes], [lv.index for lv in first.levels]
    for other in profiles[1:]:
        if ([(n.id, n.level) for n in other.nodes], [lv.index for lv in other.levels]) != shape:
            raise ValueError(
                "median_profile(): the profiles time different nodes (the plan changed "
                "between them); take the median of profiles of one plan"
            )
    nodes = []
    for k, node in enumerate(first.nodes):
        times = [p.nodes[k].seconds for p in profiles]
        low, _, high = statistics.quantiles(times, n=4, method="inclusive")
        nodes.append(
            NodeTiming(
                node.id,
                node.tags,
                statistics.median(times),
                node.level,
                profiles[-1].nodes[k].output_shape,
                (low, high),
            )
        )
    levels = []
    k = 0
    for index, level in enumerate(first.levels):
        inside = nodes[k : k + level.n_nodes]
        k += level.n_nodes
        levels.append(
            LevelTiming(
                level.index,
                statistics.median(p.levels[index].wall_seconds for p in profiles),
                sum(n.seconds for n in inside),
                level.n_nodes,
            )
        )
    total = statistics.median(p.total_seconds for p in profiles)
    return Profile(total, tuple(levels), tuple(nodes), profiles[-1].device, len(profiles))
