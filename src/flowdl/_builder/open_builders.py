"""What `Flow.loop` and `Flow.map` return: a half-built construct waiting for its terminator."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NoReturn

from flowdl._builder.arguments import check_name
from flowdl._builder.core import Unfinished, not_built, unfinished
from flowdl._control.loop import Loop, LoopMode
from flowdl._control.map import Map
from flowdl._describe import describe_module
from flowdl._errors import BuildError
from flowdl._ir.contracts import check_stream_only
from flowdl._ir.nodes import BuilderCall

if TYPE_CHECKING:
    from flowdl._builder.flow import Flow


class _OpenBuilder(Unfinished):
    """Shared by `LoopBuilder` and `MapBuilder`: a value, like the flow.

    Each terminator returns a new flow with the construct closed and leaves the
    builder as it was. A flow's builder call on it (``.build()``, ``.through()``)
    is a `BuildError` naming the missing terminator.
    """

    _flow: Flow  # the chain with `call` recorded, waiting for its terminator

    def __init__(self, flow: Flow, call: BuilderCall, body: Any) -> None:
        self._flow = flow
        self._call = call
        self._body = body

    def _terminate(self, method: str, args: tuple[Any, ...]) -> tuple[Flow, BuilderCall]:
        """A new flow to close the construct on, and the terminator call (checked by the
        caller, then recorded by `_finish`)."""
        flow = self._flow._derive(method, args, {})
        flow._open = None
        return flow, flow._next_call(method, args)

    def _finish(self, flow: Flow, call: BuilderCall, module: Any, inputs: list[int]) -> Flow:
        flow._calls.append(call)
        flow._add_construct(self._call.method, module, inputs, self._call)
        self._flow._adopt(flow)
        return flow

    def _count(self, call: BuilderCall, name: str, value: Any, fix: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BuildError(
                f"{call.text}: {name} must be at least 1",
                call=str(call),
                expected=f"an int {name} >= 1",
                received=f"{type(value).__name__} {value!r}",
                fix=fix,
            )
        return value

    def __call__(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise not_built(self._flow, args, self._call)

    if not TYPE_CHECKING:  # at run time only: mypy keeps seeing the builder's own methods

        def __getattr__(self, name: str) -> Any:
            """A flow's method (``.build``, ``.through``...): refused, naming the terminator."""
            if name.startswith("_") or not callable(getattr(type(self._flow), name, None)):
                raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

            def refuse(*args: Any, **kwargs: Any) -> NoReturn:
                call = self._flow._next_call(name, args, **kwargs)
                raise unfinished(
                    self._call,
                    call,
                    f"{self._call.text}{call.text}",
                    "finish it first, e.g. {finish}; the terminator returns the flow, on "
                    "which the chain goes on",
                )

            return refuse

    def __repr__(self) -> str:
        return f"<unfinished {''.join(c.text for c in self._flow._calls)}>"


class LoopBuilder(_OpenBuilder):
    """Returned by `Flow.loop`; one of `for_`, `while_`, `until` finishes the loop.

    Like a flow, it is a value: a terminator returns a new flow and leaves the
    builder (and the flow `loop` was called on) unchanged.

    Example:
        >>> import torch, flowdl as fl
        >>> g = (fl.Flow(torch.nn.Identity())
        ...        .loop(lambda x: 2 * x).while_(fl.ThresholdHalt(10), max_iter=10)
        ...        .build())
        >>> g(torch.tensor([1.0, 2.0]))
        tensor([ 8., 16.])
    """

    def for_(self, n: int) -> Flow:
        """Run the body exactly `n` (>= 1) times.

        Args:
            n: the number of iterations; backward runs through all of them.

        Returns:
            the flow, with the loop as its last node.

        Raises:
            BuildError: `n` is not an int >= 1.

        Example:
            >>> import torch, flowdl as fl
            >>> fl.Flow(torch.nn.Identity()).loop(lambda x: x + 1).for_(3).build()(torch.zeros(1))
            tensor([3.])
        """
        flow, call = self._terminate("for_", (n,))
        n = self._count(call, "n", n, "use .through(body) for a single application")
        return self._finish(flow, call, Loop(self._body, "for", n), [flow._streams[0]])

    def while_(self, cond: Any, max_iter: int) -> Flow:
        """Before each iteration, halt where ``cond(state) > 0``: 0 to `max_iter` iterations.

        ``cond`` returns a scalar (the batch halts together) or ``[B]`` / ``[B, 1]``
        (each sample halts on its own; a halted sample keeps its state).

        Args:
            cond: the halt condition, a module or callable of the state alone.
            max_iter: the most iterations, >= 1.

        Returns:
            the flow, with the loop as its last node.

        Raises:
            BuildError: `max_iter` is not an int >= 1, or `cond` wants references.

        Example:
            >>> import torch, flowdl as fl
            >>> g = (fl.Flow(torch.nn.Identity())
            ...        .loop(lambda x: 2 * x).while_(lambda s: s[:, 0] - 5, max_iter=10).build())
            >>> g(torch.tensor([[1.0], [8.0]]))            # per sample: 3 and 0 iterations
            tensor([[8.],
                    [8.]])
        """
        return self._halting("while_", "while", cond, max_iter)

    def until(self, cond: Any, max_iter: int) -> Flow:
        """After each iteration, halt where ``cond(state) > 0``: 1 to `max_iter` iterations.

        The condition is not evaluated after the last permitted iteration.

        Args:
            cond: the halt condition, as for `while_`.
            max_iter: the most iterations, >= 1.

        Returns:
            the flow, with the loop as its last node.

        Raises:
            BuildError: `max_iter` is not an int >= 1, or `cond` wants references.

        Example:
            >>> import torch, flowdl as fl
            >>> g = (fl.Flow(torch.nn.Identity())
            ...        .loop(lambda x: 2 * x).until(lambda s: s[:, 0] - 5, max_iter=10).build())
            >>> g(torch.tensor([[1.0], [8.0]]))            # per sample: 3 and 1 iterations
            tensor([[ 8.],
                    [16.]])
        """
        return self._halting("until", "until", cond, max_iter)

    def _halting(self, method: str, mode: LoopMode, cond: Any, max_iter: int) -> Flow:
        flow, call = self._terminate(method, (cond, max_iter))
        fn = flow._node_callable(cond, call)
        max_iter = self._count(
            call,
            "max_iter",
            max_iter,
            "max_iter bounds the loop; give it the most iterations you allow, e.g. 10",
        )
        check_stream_only(fn, f"the halt condition ({describe_module(fn)})", call)
        return self._finish(flow, call, Loop(self._body, mode, max_iter, fn), [flow._streams[0]])


class MapBuilder(_OpenBuilder):
    """Returned by `Flow.map`; `each`, `over` or `slices` finishes the map.

    Like a flow, it is a value: `batched` returns a new builder, a terminator a new
    flow, and neither changes the builder it is called on.

    Example:
        >>> import torch, flowdl as fl
        >>> g = fl.Flow(torch.nn.Identity()).map(torch.nn.Linear(4, 2)).slices(2).build()
        >>> g(torch.randn(3, 8)).shape
        torch.Size([3, 4])
    """

    def __init__(self, flow: Flow, call: BuilderCall, body: Any, batched: bool = False) -> None:
        super().__init__(flow, call, body)
        self._batched = batched

    def batched(self) -> MapBuilder:
        """Call the body once on all rows instead of row by row (then a terminator).

        Returns:
            a new builder, waiting for its terminator.

        Raises:
            BuildError: `batched` is given twice.

        Example:
            >>> import torch, flowdl as fl
            >>> g = fl.Flow(torch.nn.Identity()).map(torch.nn.Linear(2, 1)).batched().each().build()
            >>> g(torch.randn(5, 2)).shape
            torch.Size([5, 1])
        """
        flow, call = self._terminate("batched", ())
        if self._batched:
            raise BuildError(
                ".batched() is given twice",
                call=str(call),
                expected="at most one .batched() before the terminator",
                received=f"{self._call.text}.batched().batched()",
                fix="remove the second .batched()",
            )
        flow._calls.append(call)
        flow._open = self._call
        self._flow._adopt(flow)
        return MapBuilder(flow, self._call, self._body, batched=True)

    def each(self) -> Flow:
        """Apply the body to every row of the stream (along dimension 0).

        Returns:
            the flow, with the map as its last node.

        Example:
            >>> import torch, flowdl as fl
            >>> g = fl.Flow(torch.nn.Identity()).map(lambda row: row / row.sum()).each().build()
            >>> g(torch.tensor([[1.0, 3.0]]))
            tensor([[0.2500, 0.7500]])
        """
        flow, call = self._terminate("each", ())
        module = Map(self._body, "each", batched=self._batched)
        return self._finish(flow, call, module, [flow._streams[0]])

    def over(self, tag: str) -> Flow:
        """Apply the body to every row of the value named `tag` (defined earlier).

        The current stream is left as it is; the map's output becomes the stream.

        Args:
            tag: a tag defined earlier in the chain.

        Returns:
            the flow, with the map as its last node.

        Raises:
            BuildError: `tag` is unknown, or defined later (a forward reference).

        Example:
            >>> import torch, flowdl as fl
            >>> g = (fl.Flow(torch.nn.Identity()).tag("x").through(torch.neg)
            ...        .map(lambda row: 2 * row).over("x").build())
            >>> g(torch.tensor([[1.0], [2.0]]))
            tensor([[2.],
                    [4.]])
        """
        flow, call = self._terminate("over", (tag,))
        check_name(tag, "tag", call)
        if tag not in flow._tags:
            known = ", ".join(sorted(flow._tags)) or "none"
            later = tag in flow._pending_refs
            raise BuildError(
                f".over({tag!r}) "
                + ("refers to a tag defined later" if later else "refers to an unknown tag"),
                call=str(call),
                expected=f"a tag defined earlier in the chain; known tags: {known}",
                received=repr(tag),
                fix="map over a value of this call: define the tag before .map(...)"
                if later
                else f"define it with .tag({tag!r}) before .map(...), or fix the name",
            )
        module = Map(self._body, "over", batched=self._batched)
        return self._finish(flow, call, module, [flow._tags[tag]])

    def slices(self, n: int) -> Flow:
        """Cut the last dimension into `n` equal slices and apply the body to each.

        ``[B, D] -> [B * n, D / n] -> body -> [B * n, D'] -> [B, n * D']``.

        Args:
            n: the number of slices, >= 1; it must divide the last dimension.

        Returns:
            the flow, with the map as its last node.

        Raises:
            BuildError: `n` is not an int >= 1.

        Example:
            >>> import torch, flowdl as fl
            >>> g = fl.Flow(torch.nn.Identity()).map(torch.nn.Linear(4, 2)).slices(3).build()
            >>> g(torch.randn(5, 12)).shape
            torch.Size([5, 6])
        """
        flow, call = self._terminate("slices", (n,))
        n = self._count(call, "n", n, "use .each() to map whole rows")
        module = Map(self._body, "slices", n_slices=n, batched=self._batched)
        return self._finish(flow, call, module, [flow._streams[0]])
