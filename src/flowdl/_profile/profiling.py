"""Profiling, a feature of `fl.Graph`: `enable_profiling`, `profile`, `timing`, `on_profile`."""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any, ClassVar

from torch.utils.hooks import RemovableHandle

from flowdl._executor.core import GraphCore
from flowdl._ir.nodes import NodeKind
from flowdl._profile.median import median_profile
from flowdl._profile.profile import Profile
from flowdl._profile.runner import Profiler

__all__ = [
    "HEAT_MAP_RUNS",
    "KEPT_PROFILES",
    "ProfileHook",
    "Profiling",
    "is_profiling",
    "profile_of",
]

KEPT_PROFILES = 100
"""How many of the latest profiles a graph keeps for ``profile(runs=N)``."""

HEAT_MAP_RUNS = 10
"""The heat map (``dot(profile=True)``) draws the median of up to this many latest runs."""

ProfileHook = Callable[[Profile], Any]
"""Receives every new `Profile` (`Graph.on_profile`)."""


def profile_of(graph: GraphCore) -> Profile | None:
    """The last profile of `graph` (any graph of the tree), or ``None``."""
    profile = graph.__dict__.get("_last_profile")
    return profile if isinstance(profile, Profile) else None


def is_profiling(graph: GraphCore) -> bool:
    """Whether profiling is on for `graph` (any graph of the tree)."""
    return isinstance(graph.__dict__.get("_profiler"), Profiler)


class Profiling(GraphCore):
    """Per-node and per-level timing of forwards; a feature of `fl.Graph`.

    Off by default, and then free: the forward runs its plain loop and reads no
    clock. When on, the forward runs a second loop that marks a clock around each
    node and level. On the CPU the clock is ``time.perf_counter``; when the graph's
    first tensor input is on a CUDA device, it records CUDA events on that device's
    current stream and synchronises once, at the end of the forward, so the node
    times are GPU times and the kernels still queue as usual.

    What is timed: each node of this graph's plan, as one call. A loop, map, gate
    or switch is timed as a whole, and so is a nested graph; enable profiling on
    the nested graph itself to see inside it (its `profile` then holds its last
    call: for a loop body, the last iteration). A compiled graph (`Graph.compile`)
    runs its eager plan while profiling is on, because a compiled segment has no
    node boundaries to time; disable profiling to run compiled again. Under
    ``torch.compile(graph)`` the profiled loop is not used (clocks are eager-only).
    """

    _transient: ClassVar[tuple[str, ...]] = (
        "_profiler",
        "_last_profile",
        "_profile_hooks",
        "_profiles",
    )
    """Copies and pickles start unprofiled, without hooks."""

    _profiler: Profiler | None = None
    _last_profile: Profile | None = None
    _profile_hooks: OrderedDict[int, ProfileHook] | None = None
    _profiles: deque[Profile] | None = None

    def enable_profiling(self) -> None:
        """Time every forward from now on; `profile` returns the last.

        Example:
            >>> import torch, flowdl as fl
            >>> g = fl.Flow(torch.nn.Linear(2, 2)).build()
            >>> g.profiling
            False
            >>> g.enable_profiling()
            >>> g.profiling
            True
        """
        if self._profiler is None:
            profiler = Profiler(self._keep_profile)
            self.__dict__["_profiler"] = profiler
            self._instrument_with(profiler)

    def disable_profiling(self) -> None:
        """Stop timing forwards and forget the last profile (hooks stay registered).

        Example:
            >>> import torch, flowdl as fl
            >>> g = fl.Flow(torch.nn.Linear(2, 2)).build()
            >>> g.enable_profiling()
            >>> _ = g(torch.randn(1, 2))
            >>> g.disable_profiling()
            >>> g.profile() is None
            True
        """
        self.__dict__["_profiler"] = None
        self.__dict__["_last_profile"] = None
        self.__dict__["_profiles"] = None
        self._instrument_with(None)

    @property
    def profiling(self) -> bool:
        """Whether forwards are timed (`enable_profiling`)."""
        return self._profiler is not None

    @property
    def profiled_runs(self) -> int:
        """How many profiled forwards are kept for ``profile(runs=N)`` (at most 100)."""
        return len(self._profiles) if self._profiles is not None else 0

    def profile(self, runs: int = 1) -> Profile | None:
        """The `fl.Profile` of the last successful profiled forward, or ``None``.

        With ``runs=N``, the median of the last N profiled forwards: each node's,
        each level's and the total time is the median over the N runs, each node's
        ``spread`` holds its first and third quartiles, and ``runs`` is N. One
        forward's times carry the scheduler's noise; the median does not. The
        graph keeps its last 100 profiles (`profiled_runs` says how many it has);
        the heat map (``dot(profile=True)``) draws the median of up to 10.

        A forward that raises leaves the previous profiles in place.

        Args:
            runs: how many of the latest profiled forwards to take the median of.

        Returns:
            the profile, or ``None`` before the first profiled forward.

        Raises:
            ValueError: `runs` is not an int from 1 to 100, or more than the
                profiled forwards kept.

        Example:
            >>> import torch, flowdl as fl
            >>> g = fl.Flow(torch.nn.Linear(2, 2)).through(torch.nn.Tanh()).build()
            >>> g.profile() is None
            True
            >>> g.enable_profiling()
            >>> _ = g(torch.randn(4, 2))
            >>> [node.id for node in g.profile().nodes]
            ['Linear_0', 'Tanh_0']
            >>> for _ in range(4):
            ...     _ = g(torch.randn(4, 2))
            >>> p = g.profile(runs=5)
            >>> p.runs, p.nodes[0].spread[0] <= p.nodes[0].seconds <= p.nodes[0].spread[1]
            (5, True)
        """
        if isinstance(runs, bool) or not isinstance(runs, int) or not 1 <= runs <= KEPT_PROFILES:
            raise ValueError(
                f"g.profile(runs={runs!r}): runs must be an int from 1 to {KEPT_PROFILES} "
                "(the number of latest profiled forwards to take the median of)"
            )
        if runs == 1 or self._last_profile is None:
            return self._last_profile
        kept = self._profiles or deque()
        if runs > len(kept):
            raise ValueError(
                f"g.profile(runs={runs}): only {len(kept)} profiled forward"
                f"{'s are' if len(kept) != 1 else ' is'} kept; run {runs - len(kept)} more "
                f"profiled forward(s), or ask for runs={len(kept)} (g.profiled_runs)"
            )
        return median_profile(list(kept)[-runs:])

    def timing(self, tag: str) -> float | None:
        """Seconds the node named `tag` took in the last profiled forward.

        Args:
            tag: a tag of this graph.

        Returns:
            the duration; ``0.0`` for a tag naming a graph input (inputs take no
            time); ``None`` when there is no profile (profiling off, or no forward yet).

        Raises:
            KeyError: the tag does not exist in this graph (the message lists those that do).

        Example:
            >>> import torch, flowdl as fl
            >>> g = fl.Flow(torch.nn.Linear(2, 2)).tag("hidden").build()
            >>> g.timing("hidden") is None
            True
            >>> g.enable_profiling()
            >>> _ = g(torch.randn(4, 2))
            >>> g.timing("hidden") > 0
            True
        """
        self.tagged(tag)  # raises the KeyError listing the tags
        profile = self._last_profile
        if profile is None:
            return None
        if self._record.nodes[self._record.tags[tag]].kind is NodeKind.INPUT:
            return 0.0
        return profile.timing(tag)

    def on_profile(self, hook: ProfileHook) -> RemovableHandle:
        """Call ``hook(profile)`` after every successful profiled forward.

        The hook runs at the end of the forward, after the state and the tagged
        values are updated; an exception it raises reaches the caller of the
        forward. Several hooks run in registration order; removing one leaves the
        others. Hooks stay registered while profiling is off (they are not called
        then); copies of the graph start without them.

        Returns:
            a handle whose ``remove()`` unregisters the hook.

        Example:
            >>> import torch, flowdl as fl
            >>> g = fl.Flow(torch.nn.Linear(2, 2)).build()
            >>> seen = []
            >>> handle = g.on_profile(lambda p: seen.append(len(p.nodes)))
            >>> g.enable_profiling()
            >>> _ = g(torch.randn(1, 2)); _ = g(torch.randn(1, 2))
            >>> seen
            [1, 1]
            >>> handle.remove()
        """
        if not callable(hook):
            raise TypeError(
                f"on_profile() takes a function called with the Profile; received "
                f"{type(hook).__name__} {hook!r}"
            )
        hooks = self._profile_hooks
        if hooks is None:
            hooks = OrderedDict()
            self.__dict__["_profile_hooks"] = hooks
        handle = RemovableHandle(hooks)
        hooks[handle.id] = hook
        return handle

    def _keep_profile(self, profile: Profile) -> None:
        """What the profiler does with the profile of a successful forward."""
        self.__dict__["_last_profile"] = profile
        kept = self._profiles
        if kept is None:
            kept = deque(maxlen=KEPT_PROFILES)
            self.__dict__["_profiles"] = kept
        elif kept and _layout(kept[-1]) != _layout(profile):
            kept.clear()  # the plan changed (a module replaced): older runs time other nodes
        kept.append(profile)
        hooks = self._profile_hooks
        if hooks:
            for hook in list(hooks.values()):
                hook(profile)


def _layout(profile: Profile) -> list[tuple[str, int]]:
    """What a profile times: its nodes and their levels."""
    return [(node.id, node.level) for node in profile.nodes]
