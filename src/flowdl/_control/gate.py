"""`Flow.gate`: soft routing, ``sum_i w_i * expert_i(x)``, ``w = router(x)``; sparse for top-k."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from flowdl._control.base import (
    Callables,
    ControlNode,
    Grouped,
    cannot_export,
    carries_state,
    run_inner,
    stateful_on_some_samples,
)
from flowdl._control.routing import RoutingUsage, RoutingWatch, usage_from_weights
from flowdl._describe import describe_value
from flowdl._errors import ControlFlowError


class Gate(ControlNode):
    """The node of ``.gate(router, *experts)``: a mixture of experts.

    ``w = router(x, *refs)`` has shape ``[..., n]`` (one weight per expert, ``n``
    experts); the output is ``sum_i w[..., i] * expert_i(x)``, each weight
    broadcast over the trailing dimensions of its expert's output. The gate does
    not normalise: the router owns softmax, sigmoid or top-k.

    A router with ``sparse = True`` (such as `fl.TopKRouter`) returns ``[B, n]``
    weights that are zero for most experts. The gate then runs each expert only
    on the samples that give it a non-zero weight and adds the weighted outputs
    back in batch order; an expert that receives no sample does not run. The
    result equals the dense gate on the same weights. An expert with
    forward-reference state is refused there (its rows would belong to other
    samples from call to call); a dense gate runs it on the whole batch.

    Attributes:
        router: the router.
        experts: the experts, in order.
        sparse: whether the router's weights are sparse.
    """

    _roles: ClassVar[dict[str, str]] = {"router": "router", "experts": "experts"}
    _lists: ClassVar[tuple[str, ...]] = ("experts",)
    _watched_attributes: ClassVar[tuple[str, ...]] = ("router",)
    _routing: RoutingWatch | None = None  # set by Graph.routing (flowdl._control.routing)

    def __init__(self, router: Callable[..., Any], experts: Sequence[Callable[..., Any]]) -> None:
        super().__init__()
        self.router = router
        self.experts = Callables(experts, role="expert")
        self._refresh(set())
        self._start_watching()

    def _refresh(self, sources: set[int]) -> None:
        """Whether the router is sparse, which experts keep state (also after a replacement)."""
        self.sparse = bool(getattr(self.router, "sparse", False))
        self._stateful = [i for i, fn in enumerate(self.experts) if carries_state(fn)]

    def rebuilt(self) -> Gate:
        return Gate(self.router, list(self.experts))

    def inner(self) -> list[tuple[str, Callable[..., Any]]]:
        experts = [(f"expert {i}", fn) for i, fn in enumerate(self.experts)]
        return [("router", self.router), *experts]

    def reset_targets(self) -> list[Callable[..., Any]]:
        """The router is reset before every forward; so are the experts of a dense gate
        (a sparse gate's experts see a different number of samples at every call)."""
        return [self.router] if self.sparse else [fn for _, fn in self.inner()]

    def forward(self, x: Any, *refs: Any) -> Any:
        return self.mix(x, refs)

    def mix(self, x: Any, refs: tuple[Any, ...], grouped: Grouped | None = None) -> Any:
        """The forward pass; fast mode passes `grouped` to run sparse experts as one."""
        weights = run_inner("router", self.router, "", self.call_receiver, x, refs)
        n = len(self.experts)
        if not isinstance(weights, Tensor) or weights.dim() == 0 or weights.shape[-1] != n:
            raise ControlFlowError(
                "the router's weights do not have one entry per expert in their last dimension",
                expected=f"a tensor of shape [B, {n}] ({n} experts)",
                received=describe_value(weights),
                fix=f"make the router output {n} weights per sample, e.g. "
                f"fl.SoftmaxRouter(in_dim, {n})",
            )
        if self._routing is not None:  # only once someone asked for the routing
            self._routing.note(weights)
        if self.sparse and weights.dim() == 2 and isinstance(x, Tensor) and x.shape[0] > 0:
            return self._sparse(x, weights, grouped)
        return self._dense(x, weights)

    def routing_usage(self) -> RoutingUsage | None:
        """The usage of the experts in this thread's last watched forward (see
        `flowdl._control.routing`), or ``None``."""
        seen = self._routing.seen if self._routing is not None else None
        return None if seen is None else usage_from_weights(seen, self.sparse)

    def _dense(self, x: Any, weights: Tensor) -> Any:
        outputs = [
            run_inner(f"expert {i}", expert, "", expert, x) for i, expert in enumerate(self.experts)
        ]
        lead = weights.dim() - 1  # the dimension the experts are stacked along
        first = outputs[0]
        self._check_aligned(weights.shape[:-1], first, 0)
        try:
            stacked = torch.stack(outputs, dim=lead)  # [..., n, *trailing]
        except (TypeError, RuntimeError) as error:
            for i, y in enumerate(outputs):
                self._check_aligned(weights.shape[:-1], y, i)
            raise ControlFlowError(
                "the experts' outputs differ in shape, so they cannot be summed",
                expected=f"every expert returns {describe_value(first)}",
                received=", ".join(describe_value(y) for y in outputs),
                fix="make every expert return the same shape",
            ) from error
        # One multiply and one sum over the stacked outputs, not one per expert.
        w = weights.reshape(weights.shape + (1,) * (first.dim() - lead))
        return (stacked * w).sum(lead)

    @staticmethod
    def _check_aligned(lead: torch.Size, y: Any, i: int) -> None:
        """Expert `i`'s output `y` must start with the weights' leading dimensions `lead`."""
        if not isinstance(y, Tensor) or y.dim() < len(lead) or y.shape[: len(lead)] != lead:
            raise ControlFlowError(
                f"expert {i}'s output does not line up with the router's weights",
                expected=f"a tensor whose leading dimensions are {list(lead)} (the weights "
                "without their last dimension)",
                received=describe_value(y),
                fix="make every expert keep the batch dimensions of its input",
            )

    def _scale(self, w: Tensor, y: Any, i: int) -> Tensor:
        """`w` shaped to multiply `y`: ``[B] -> [B, 1, ...]``."""
        self._check_aligned(w.shape, y, i)
        return w.reshape(w.shape + (1,) * (y.dim() - w.dim()))

    def _sparse(self, x: Tensor, weights: Tensor, grouped: Grouped | None = None) -> Tensor:
        if torch.compiler.is_exporting():
            raise cannot_export(
                "a sparse .gate(...) (top-k routing)",
                "which samples each expert runs on",
                "export with a dense router (fl.SoftmaxRouter), or run this graph with g.compile()",
            )
        if self._stateful:
            i = self._stateful[0]
            raise stateful_on_some_samples("a sparse gate", "expert", i, self.experts[i])
        if weights.shape[0] != x.shape[0]:
            raise ControlFlowError(
                "the router's weights have another batch size than the stream",
                expected=f"weights of shape [{x.shape[0]}, {len(self.experts)}]",
                received=describe_value(weights),
                fix="route each sample of the batch: weights of shape [B, n]",
            )
        chosen = (weights != 0).t()  # [n, B]
        counts = chosen.sum(1).tolist()  # the one host sync of the dispatch
        if grouped is not None and any(counts) and grouped.accepts(x):
            expert_rows = chosen.nonzero()  # (expert, row), by expert then row
            rows, which = expert_rows[:, 1], expert_rows[:, 0]
            y = grouped.run_sorted(x.index_select(0, rows), counts)
            term = weights[rows, which].unsqueeze(-1) * y
            return term.new_zeros((x.shape[0], *term.shape[1:])).index_add(0, rows, term)
        rows_by_expert = torch.split(chosen.nonzero()[:, 1], counts)
        out: Tensor | None = None
        for i, (expert, rows) in enumerate(zip(self.experts, rows_by_expert, strict=True)):
            if counts[i] == 0:
                continue
            part = x.index_select(0, rows)
            y = run_inner(f"expert {i}", expert, "", expert, part)
            term = self._scale(weights[rows, i], y, i) * y
            if out is None:
                out = term.new_zeros((x.shape[0], *term.shape[1:]))
            out = out.index_add(0, rows, term)
        if out is None:  # no sample chose any expert: the dense sum is all zeros
            dense: Tensor = self._dense(x, weights)
            return dense
        return out
