"""`Flow.switch`: hard routing, the whole batch or each sample to one branch."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from flowdl._control.base import (
    Callables,
    ControlNode,
    Grouped,
    batch_size,
    cannot_export,
    carries_state,
    run_inner,
    stateful_on_some_samples,
)
from flowdl._control.routing import RoutingUsage, RoutingWatch, usage_from_choice
from flowdl._describe import describe_value
from flowdl._errors import ControlFlowError


class Switch(ControlNode):
    """The node of ``.switch(selector, *branches)``: only the selected branches run.

    ``s = selector(x, *refs)`` is either a scalar index (a Python int or a 0-d
    integer tensor): the whole batch takes that branch; or an integer tensor of
    shape ``[B]`` (or ``[B, 1]``): each sample takes its own branch. Then each
    branch runs once, on its own samples, and the outputs are put back in batch
    order; a branch that no sample chose does not run, and gradients reach only
    the branches that ran. Branches receive the stream only. The choice is not
    differentiable.

    Branches see a different number of samples from call to call, so they are not
    reset (``reset()``) by the graph; the selector is reset. A branch that is a
    graph with forward-reference state runs under whole-batch routing, and is
    refused (with the reason) under per-sample routing, where its rows would
    belong to other samples from call to call.

    Attributes:
        selector: the selector.
        branches: the branches, in order.
    """

    _roles: ClassVar[dict[str, str]] = {"selector": "selector", "branches": "branches"}
    _lists: ClassVar[tuple[str, ...]] = ("branches",)
    _watched_attributes: ClassVar[tuple[str, ...]] = ("selector",)
    _routing: RoutingWatch | None = None  # set by Graph.routing (flowdl._control.routing)

    def __init__(
        self, selector: Callable[..., Any], branches: Sequence[Callable[..., Any]]
    ) -> None:
        super().__init__()
        self.selector = selector
        self.branches = Callables(branches, role="branch")
        self._refresh(set())
        self._start_watching()

    def _refresh(self, sources: set[int]) -> None:
        """Which branches keep state (also after a replacement)."""
        self._stateful = [i for i, fn in enumerate(self.branches) if carries_state(fn)]

    def rebuilt(self) -> Switch:
        return Switch(self.selector, list(self.branches))

    def inner(self) -> list[tuple[str, Callable[..., Any]]]:
        branches = [(f"branch {i}", fn) for i, fn in enumerate(self.branches)]
        return [("selector", self.selector), *branches]

    def reset_targets(self) -> list[Callable[..., Any]]:
        """The selector is reset before every forward; the branches are not."""
        return [self.selector]

    def forward(self, x: Any, *refs: Any) -> Any:
        return self.route(x, refs)

    def route(self, x: Any, refs: tuple[Any, ...], grouped: Grouped | None = None) -> Any:
        """The forward pass; fast mode passes `grouped` to run the branches as one."""
        choice = run_inner("selector", self.selector, "", self.call_receiver, x, refs)
        if self._routing is not None:  # only once someone asked for the routing
            # the batch size, not the stream: a watch must not keep an activation alive
            self._routing.note((choice, x.shape[0] if isinstance(x, Tensor) and x.dim() else 1))
        if isinstance(choice, int) and not isinstance(choice, bool):
            return self._run_branch(self._check_index(choice), x)
        if not isinstance(choice, Tensor) or choice.is_floating_point() or choice.is_complex():
            raise self._bad_choice(x, choice)
        if choice.dtype == torch.bool:
            raise self._bad_choice(x, choice)
        if choice.dim() == 0:
            return self._run_branch(self._check_index(int(choice)), x)
        batch = batch_size(x, "stream", "per-sample routing")
        if tuple(choice.shape) not in ((batch,), (batch, 1)):
            if choice.numel() == 1:
                return self._run_branch(self._check_index(int(choice.reshape(()))), x)
            raise self._bad_choice(x, choice)
        return self._per_sample(x, choice.reshape(batch).long(), grouped)

    def routing_usage(self) -> RoutingUsage | None:
        """The usage of the branches in this thread's last watched forward (see
        `flowdl._control.routing`), or ``None``."""
        seen = self._routing.seen if self._routing is not None else None
        if seen is None:
            return None
        choice, batch = seen
        return usage_from_choice(choice, batch, len(self.branches))

    def _run_branch(self, i: int, x: Any) -> Any:
        branch = self.branches[i]
        return run_inner(f"branch {i}", branch, "", branch, x)

    def _check_index(self, i: int, sample: int | None = None) -> int:
        n = len(self.branches)
        if 0 <= i < n:
            return i
        who = "the whole batch" if sample is None else f"sample {sample}"
        raise ControlFlowError(
            f"the selector chose branch {i} for {who}, outside the valid range [0, {n})",
            expected=f"an index in [0, {n}) ({n} branches)",
            received=f"index {i}",
            fix=f"make the selector choose among the {n} branches, e.g. "
            f"fl.ArgmaxSelector(in_dim, {n})",
        )

    def _bad_choice(self, x: Any, choice: Any) -> ControlFlowError:
        b = x.shape[0] if isinstance(x, Tensor) and x.dim() > 0 else "B"
        return ControlFlowError(
            "the selector returned neither a branch index nor one index per sample",
            expected=f"a Python int or a 0-d integer tensor (the whole batch), or an integer "
            f"tensor of shape [{b}] (one branch per sample)",
            received=describe_value(choice),
            fix="return indices, e.g. logits.argmax(-1) for one per sample",
        )

    def _per_sample(self, x: Tensor, index: Tensor, grouped: Grouped | None = None) -> Any:
        if torch.compiler.is_exporting():
            raise cannot_export(
                "a per-sample .switch(...)",
                "which samples each branch runs on",
                "export with a selector choosing one branch for the whole batch (a Python "
                "int), or run this graph with g.compile()",
            )
        if self._stateful:
            i = self._stateful[0]
            raise stateful_on_some_samples("a per-sample switch", "branch", i, self.branches[i])
        n = len(self.branches)
        batch = index.shape[0]
        if batch == 0:  # nothing to route: the first branch shapes the empty output
            return self._run_branch(0, x)
        # One host sync: counts per branch, with out-of-range indices counted at both ends.
        tally = torch.bincount(index.clamp(-1, n) + 1, minlength=n + 2).tolist()
        if tally[0] or tally[-1]:
            bad = int(((index < 0) | (index >= n)).nonzero()[0, 0])
            self._check_index(int(index[bad]), sample=bad)
        counts = tally[1:-1]
        if max(counts) == batch:  # every sample chose the same branch
            return self._run_branch(counts.index(batch), x)
        order = torch.argsort(index, stable=True)
        if grouped is not None and grouped.accepts(x):
            return self._put_back(grouped.run_sorted(x.index_select(0, order), counts), order)
        outputs = []
        for i, rows in enumerate(torch.split(order, counts)):
            if counts[i]:
                part = x.index_select(0, rows)
                branch = self.branches[i]
                outputs.append(run_inner(f"branch {i}", branch, "", branch, part))
        try:
            joined = torch.cat(outputs)
        except (TypeError, RuntimeError) as error:
            shapes = ", ".join(describe_value(y) for y in outputs)
            raise ControlFlowError(
                "the branches' outputs cannot be put back into one batch",
                expected="every branch returns a tensor with the same shape per sample",
                received=f"outputs of the branches that ran: {shapes}",
                fix="make the branches agree on their output shape (only the batch size may "
                "differ)",
            ) from error
        return self._put_back(joined, order)

    @staticmethod
    def _put_back(joined: Tensor, order: Tensor) -> Tensor:
        """The rows of `joined` (in the order `order` took them) back in batch order."""
        batch = order.shape[0]
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(batch, device=order.device)
        return joined.index_select(0, inverse)
