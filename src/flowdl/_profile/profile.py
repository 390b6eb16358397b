"""`fl.Profile`: the timings of one profiled forward, per node and per level."""

from __future__ import annotations

from dataclasses import dataclass

from flowdl._format import format_precise_duration

_LABEL_WIDTH = 40


@dataclass(frozen=True)
class NodeTiming:
    """How long one node took in a profiled forward.

    Attributes:
        id: the node's id (``Linear_0``, ``loop_0``), as in ``g.dot()`` and errors.
        tags: the node's tags.
        seconds: its duration: the node's call, from its inputs to its output (a
            loop, gate, switch, map or nested graph as a whole).
        level: its level (``g.levels``; level 0 holds the inputs, which take no time).
        output_shape: the shape of its output when that is a tensor, else ``None``.
        spread: for a profile of several runs (`Graph.profile` with ``runs``), the
            first and third quartiles of the node's durations over the runs
            (``seconds`` is their median); ``None`` for one run.
    """

    id: str
    tags: tuple[str, ...]
    seconds: float
    level: int
    output_shape: tuple[int, ...] | None = None
    spread: tuple[float, float] | None = None

    @property
    def label(self) -> str:
        """``Linear_0 "hidden"``: the id, then the tags in double quotes."""
        return " ".join([self.id, *(f'"{tag}"' for tag in self.tags)])


@dataclass(frozen=True)
class LevelTiming:
    """How long one level of the plan took.

    Attributes:
        index: the level (as in ``g.levels``).
        wall_seconds: the time from the level's first node starting to its last ending.
        node_seconds: the sum of its nodes' durations.
        n_nodes: how many nodes it has.
    """

    index: int
    wall_seconds: float
    node_seconds: float
    n_nodes: int

    @property
    def parallelism(self) -> float:
        """``node_seconds / wall_seconds`` for a level of several nodes, else ``1.0``.

        Above 1 the nodes overlapped. flowdl runs the nodes of a level one after
        the other, so today this is at most 1: the share of the level's time spent
        inside its nodes rather than between them.
        """
        if self.n_nodes > 1 and self.wall_seconds > 0:
            return self.node_seconds / self.wall_seconds
        return 1.0


@dataclass(frozen=True)
class Profile:
    """The timings of a profiled forward of a graph (see `Graph.enable_profiling`).

    Every profiled forward makes a new `Profile`; `Graph.profile` returns the last,
    and ``Graph.profile(runs=N)`` the median of the last N (each node's time, each
    level's time and the total are medians; `NodeTiming.spread` gives the quartiles).

    Attributes:
        total_seconds: the whole run of the plan, first node to last.
        levels: one `LevelTiming` per level that has nodes, in order.
        nodes: one `NodeTiming` per node, in execution order.
        device: where the clock ran: ``"cpu"`` (``time.perf_counter``) or a CUDA
            device such as ``"cuda:0"`` (CUDA events on its current stream).
        runs: how many forwards the figures are the median of (1: one forward).

    Example:
        >>> import torch, flowdl as fl
        >>> g = fl.Flow(torch.nn.Linear(2, 2)).tag("hidden").through(torch.nn.ReLU()).build()
        >>> g.enable_profiling()
        >>> _ = g(torch.randn(3, 2))
        >>> p = g.profile()
        >>> [(n.id, n.level) for n in p.nodes], p.total_seconds > 0
        ([('Linear_0', 1), ('ReLU_0', 2)], True)
        >>> print(p)  # doctest: +SKIP
        Forward: 48µs (2 levels, 2 nodes) on cpu
        <BLANKLINE>
          Level 1  31µs
            Linear_0 "hidden"                            30µs   62.5%
        ...
    """

    total_seconds: float
    levels: tuple[LevelTiming, ...]
    nodes: tuple[NodeTiming, ...]
    device: str = "cpu"
    runs: int = 1

    def node(self, node_id: str) -> NodeTiming:
        """The timing of the node `node_id`.

        Raises:
            KeyError: no node of that id was timed (the message lists those that were).
        """
        for timing in self.nodes:
            if timing.id == node_id:
                return timing
        known = ", ".join(t.id for t in self.nodes) or "none"
        raise KeyError(f"no node {node_id!r} in this profile; its nodes are: {known}")

    def timing(self, tag: str) -> float:
        """The duration in seconds of the node named `tag`.

        Raises:
            KeyError: no timed node has that tag (the message lists the timed tags).
        """
        for timing in self.nodes:
            if tag in timing.tags:
                return timing.seconds
        known = ", ".join(t for n in self.nodes for t in n.tags) or "none"
        raise KeyError(f"no timed node is tagged {tag!r}; the timed tags are: {known}")

    @property
    def max_node_seconds(self) -> float:
        """The longest node duration (0 without nodes): the red end of a heat map."""
        return max((n.seconds for n in self.nodes), default=0.0)

    def __str__(self) -> str:
        total = self.total_seconds
        median = f", median of {self.runs} runs" if self.runs > 1 else ""
        lines = [
            f"Forward: {format_precise_duration(total)} ({len(self.levels)} levels, "
            f"{len(self.nodes)} nodes{median}) on {self.device}"
        ]
        by_level: dict[int, list[NodeTiming]] = {}
        for timing in self.nodes:
            by_level.setdefault(timing.level, []).append(timing)
        for level in self.levels:
            head = f"  Level {level.index}  {format_precise_duration(level.wall_seconds)}"
            if level.n_nodes > 1:
                head += f"  {level.n_nodes} nodes  ×{level.parallelism:.2f}"
            lines += ["", head]
            for timing in by_level.get(level.index, []):
                share = f"{100 * timing.seconds / total:5.1f}%" if total > 0 else ""
                spread = ""
                if timing.spread is not None:
                    low, high = (format_precise_duration(q) for q in timing.spread)
                    spread = f"  (quartiles {low}–{high})"
                lines.append(
                    f"    {timing.label:<{_LABEL_WIDTH}} "
                    f"{format_precise_duration(timing.seconds):>8} {share:>7}{spread}".rstrip()
                )
        return "\n".join(lines)

    def __repr__(self) -> str:
        median = f" (median of {self.runs} runs)" if self.runs > 1 else ""
        return (
            f"<Profile {format_precise_duration(self.total_seconds)}{median}: "
            f"{len(self.levels)} levels, {len(self.nodes)} nodes on {self.device}>"
        )
