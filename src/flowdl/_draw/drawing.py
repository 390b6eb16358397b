"""Drawing, a feature of `fl.Graph`: `dot`, `svg` and `summary`."""

from __future__ import annotations

import os

from flowdl._draw.dot import render_dot
from flowdl._draw.summary import Summary, build_summary
from flowdl._draw.svg import GraphvizError, render_svg
from flowdl._errors import GraphError
from flowdl._files import write_text_atomic
from flowdl._profile.profile import Profile
from flowdl._profile.profiling import HEAT_MAP_RUNS, Profiling

__all__ = ["Drawing"]


class Drawing(Profiling):
    """Pictures and tables of a graph, made from what the builder recorded.

    No forward pass is needed: every branch of every gate and switch is drawn,
    a loop is drawn once with its count, and parameters are counted once per
    tensor. A feature of `fl.Graph`; `dot(profile=True)` draws the last profile.
    """

    def dot(self, *, profile: bool | Profile = False, depth: int | None = None) -> str:
        """The graph as Graphviz DOT text; needs nothing installed.

        Args:
            profile: ``True`` to colour the nodes by their time (green to red):
                the median of the last profiled forwards, up to 10
                (``profile(runs=...)``), so one forward's scheduler noise does not
                paint a node red; level times and parallelism on the level boxes
                and the total in the title. Or a `fl.Profile` (from
                ``profile(runs=N)`` or `on_profile`, say) to draw that one.
            depth: how many levels of nested graphs to draw open; ``0`` draws
                each nested graph as one box, ``None`` (the default) opens all.

        Returns:
            the DOT text (``digraph``), for ``dot -Tsvg`` or any Graphviz viewer.

        Raises:
            GraphError: ``profile=True`` without a profile, or a profile of
                another graph.

        Example:
            >>> import torch, flowdl as fl
            >>> g = fl.Flow(torch.nn.Linear(2, 4)).loop(torch.nn.Linear(4, 4)).for_(3).build()
            >>> text = g.dot()
            >>> text.startswith("digraph"), "×3" in text, "20 params" in text
            (True, True, True)
        """
        return render_dot(self, _check_depth(depth), self._chosen_profile(profile))

    def svg(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        profile: bool | Profile = False,
        depth: int | None = None,
    ) -> str:
        """The drawing of `dot` rendered as SVG by Graphviz's ``dot`` program.

        Args:
            path: where to write the SVG too (atomically: a temporary file in the
                same folder, then a rename); ``None`` only returns it.
            profile: as for `dot`.
            depth: as for `dot`.

        Returns:
            the SVG document.

        Raises:
            RuntimeError: Graphviz is not installed (the message says how to
                install it) or failed.
            FileNotFoundError: the folder of `path` does not exist.
            GraphError: as for `dot`.
        """
        text = render_svg(self.dot(profile=profile, depth=depth))
        if path is not None:
            write_text_atomic(path, text)
        return text

    def _repr_svg_(self) -> str | None:
        """The drawing, for Jupyter: a graph as the last line of a cell draws itself.

        ``None`` when Graphviz is not installed: Jupyter then shows the text repr.
        """
        try:
            return self.svg()
        except GraphvizError:
            return None

    def summary(self, depth: int | None = 0) -> Summary:
        """A table of the nodes: kind, tags, output shape, parameters, trainable parameters.

        Each tensor is counted once, at the first node that uses it; a module used
        again is marked, as in `dot`, and the total equals
        ``sum(p.numel() for p in g.parameters())``. Output shapes are those of the
        last forward: known for tagged nodes, and for every node when that forward
        was profiled (`enable_profiling`); ``-`` otherwise.

        Args:
            depth: how many levels inside the nodes to list: ``0`` (the default)
                gives one row per node; ``1`` adds the inner parts of loops,
                gates, switches and maps and the nodes of nested graphs; ``None``
                lists everything.

        Returns:
            a `Summary`; print it (``print(g.summary())``) or read its ``rows``.

        Example:
            >>> import torch, flowdl as fl
            >>> g = fl.Flow(torch.nn.Linear(2, 4)).tag("hidden").through(torch.nn.ReLU()).build()
            >>> s = g.summary()
            >>> [(row.name, row.parameters) for row in s.rows], s.total_parameters
            ([('input', 0), ('Linear_0', 12), ('ReLU_0', 0)], 12)
        """
        return build_summary(self, _check_depth(depth))

    def _chosen_profile(self, profile: bool | Profile) -> Profile | None:
        if isinstance(profile, Profile):
            known = {node.id for node in self._record.nodes}
            foreign = [timing.id for timing in profile.nodes if timing.id not in known]
            if foreign:
                raise GraphError(
                    "the profile to draw is not a profile of this graph",
                    expected="a Profile from this graph's profile() or on_profile hook",
                    received=f"a profile timing nodes this graph does not have: "
                    f"{', '.join(foreign[:5])}",
                    fix="draw each graph with its own profile",
                )
            return profile
        if profile is True:
            last = self.profile(runs=max(1, min(HEAT_MAP_RUNS, self.profiled_runs)))
            if last is None:
                raise GraphError(
                    "there is no profile to draw",
                    expected="a profiled forward before dot(profile=True) / svg(profile=True)",
                    received="no profile: profiling is off, or no forward ran since it was enabled",
                    fix="call g.enable_profiling(), run g(x), then draw",
                )
            return last
        if profile is False:
            return None
        raise TypeError(
            f"profile= takes True, False or a fl.Profile; received {type(profile).__name__}"
        )


def _check_depth(depth: object) -> int | None:
    if depth is None or (isinstance(depth, int) and not isinstance(depth, bool) and depth >= 0):
        return depth
    raise ValueError(
        f"depth= takes None (everything) or a number of levels >= 0; received {depth!r}"
    )
