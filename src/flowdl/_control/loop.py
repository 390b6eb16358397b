"""`Flow.loop`: apply a body n times, or until a condition halts it, per batch or per sample."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import Tensor

from flowdl._control.base import ControlNode, batch_size, run_inner
from flowdl._describe import describe_value
from flowdl._errors import ControlFlowError

LoopMode = Literal["for", "while", "until"]


class Loop(ControlNode):
    """The node of ``.loop(body).for_(n)``, ``.while_(cond, max_iter)``, ``.until(cond, max_iter)``.

    Each iteration is ``state = body(state, *refs)``; references are the same at
    every iteration. Backward runs through every iteration.

    A halt condition ``cond(state)`` (without references) returns a scalar (the
    whole batch halts when it is positive) or a ``[B]`` / ``[B, 1]`` tensor (each
    sample halts when its entry is positive). With per-sample halting the body
    still runs on the whole batch while any sample is active (so stateful bodies,
    normalisation layers and references see the batch they expect), but a halted
    sample's state is frozen: it keeps the value of its last iteration, and
    gradients reach only the iterations that sample ran. The decision itself is
    not differentiable (the condition runs under ``torch.no_grad()``).

    After a call, `iterations` holds how many iterations each sample ran and
    `traces` what a body with a ``trace()`` method reported.

    Attributes:
        body: the loop body.
        cond: the halt condition (``None`` for ``for_``).
        mode: ``"for"``, ``"while"`` or ``"until"``.
        max_iter: the number of iterations for ``for_``, the limit otherwise.
        traces: ``[body.trace()]`` before the first iteration and after each one,
            from the last call (empty if the body has no ``trace()``).
    """

    def __init__(
        self,
        body: Callable[..., Any],
        mode: LoopMode,
        max_iter: int,
        cond: Callable[..., Any] | None = None,
    ) -> None:
        super().__init__()
        self.body = body
        self.cond = cond
        self.mode = mode
        self.max_iter = max_iter
        self.receiver = body
        self.traces: list[Any] = []
        self._counts: Tensor | int = 0
        self._batch = 0
        self._device = torch.device("cpu")
        trace = getattr(body, "trace", None)
        self._trace: Callable[[], Any] | None = trace if callable(trace) else None

    def inner(self) -> list[tuple[str, Callable[..., Any]]]:
        parts: list[tuple[str, Callable[..., Any]]] = [("loop body", self.body)]
        if self.cond is not None:
            parts.append(("halt condition", self.cond))
        return parts

    def reset_targets(self) -> list[Callable[..., Any]]:
        """The body and the condition are reset before every forward."""
        return [fn for _, fn in self.inner()]

    @property
    def iterations(self) -> Tensor:
        """How many iterations each sample ran in the last call: ``int64 [B]``.

        For ``for_(n)`` and whole-batch halting every entry is the same. Use it to
        build ponder costs (see the "Advanced graphs" chapter of the tutorial).
        """
        if isinstance(self._counts, Tensor):
            return self._counts
        return torch.full((self._batch,), self._counts, dtype=torch.int64, device=self._device)

    def forward(self, state: Any, *refs: Any) -> Any:
        if isinstance(state, Tensor):
            self._batch = int(state.shape[0]) if state.dim() > 0 else 1
            self._device = state.device
        trace = self._trace
        self.traces = [trace()] if trace is not None else []
        if self.mode == "for":
            return self._run_for(state, refs)
        return self._run_halting(state, refs, check_first=self.mode == "while")

    # ------------------------------------------------------------------ runs

    def _iterate(self, state: Any, refs: tuple[Any, ...], i: int) -> Any:
        body = self.body
        state = run_inner(
            "loop body",
            body,
            f"at iteration {i} (0-based) of at most {self.max_iter}",
            self.call_receiver,
            state,
            refs,
        )
        if self._trace is not None:
            self.traces.append(self._trace())
        return state

    def _run_for(self, state: Any, refs: tuple[Any, ...]) -> Any:
        ctx = self.context()
        for i in range(self.max_iter):
            if ctx is not None:
                ctx.check()
            state = self._iterate(state, refs, i)
        self._counts = self.max_iter
        return state

    def _run_halting(self, state: Any, refs: tuple[Any, ...], check_first: bool) -> Any:
        ctx = self.context()
        active: Tensor | None = None  # None: every sample is still running
        counts: Tensor | int = 0
        for i in range(self.max_iter):
            if check_first:
                if ctx is not None:
                    ctx.check()
                active, done = self._decide(state, active, i)
                if done:
                    break
            elif i > 0 and ctx is not None:
                ctx.check()
            new = self._iterate(state, refs, i)
            if active is None:
                state = new
                counts = counts + 1
            else:
                state = self._freeze_halted(active, new, state, i)
                counts = counts + active.long()
            if not check_first and i + 1 < self.max_iter:
                active, done = self._decide(state, active, i)
                if done:
                    break
        self._counts = counts
        return state

    # -------------------------------------------------------------- halting

    def _decide(self, state: Any, active: Tensor | None, i: int) -> tuple[Tensor | None, bool]:
        """Evaluate the condition: the new active mask, and whether the loop is over."""
        cond = self.cond
        assert cond is not None
        when = "before" if self.mode == "while" else "after"
        with torch.no_grad():
            halt = run_inner("halt condition", cond, f"{when} iteration {i} (0-based)", cond, state)
        if isinstance(halt, (bool, int, float)):
            return active, bool(halt > 0)
        if not isinstance(halt, Tensor):
            raise self._bad_halt(state, halt)
        if halt.dim() == 0:
            return active, bool(halt > 0)
        batch = batch_size(state, "loop state", "per-sample halting")
        if tuple(halt.shape) in ((batch,), (batch, 1)):
            running = halt.reshape(batch) <= 0
            active = running if active is None else active & running
            return active, not bool(active.any())
        if halt.numel() == 1:
            return active, bool(halt.reshape(()) > 0)
        raise self._bad_halt(state, halt)

    def _bad_halt(self, state: Any, halt: Any) -> ControlFlowError:
        b = state.shape[0] if isinstance(state, Tensor) and state.dim() > 0 else "B"
        return ControlFlowError(
            "the halt condition returned a value that is neither a scalar nor one entry per sample",
            expected=f"a scalar (the whole batch halts when it is > 0) or a tensor of shape "
            f"[{b}] or [{b}, 1] (each sample halts when its entry is > 0)",
            received=describe_value(halt),
            fix="reduce the condition per sample, e.g. score.mean(-1), or over the batch, "
            "e.g. score.max()",
        )

    def _freeze_halted(self, active: Tensor, new: Any, old: Any, i: int) -> Tensor:
        if not isinstance(new, Tensor) or new.shape != old.shape:
            raise ControlFlowError(
                f"per-sample halting needs the loop body to keep the state's shape, but "
                f"iteration {i} (0-based) changed it",
                expected=f"{describe_value(old)} (the halted samples keep this value)",
                received=describe_value(new),
                fix="make the body return a state shaped like its input, or halt the whole "
                "batch at once with a scalar condition",
            )
        mask = active.reshape(active.shape + (1,) * (new.dim() - 1))
        return torch.where(mask, new, old)
