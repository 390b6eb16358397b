"""`Flow.loop`: apply a body n times, or until a condition halts it, per batch or per sample."""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial
from typing import Any, ClassVar, Literal, NoReturn

import torch
from torch import Tensor, nn

from flowdl._control.base import (
    ControlNode,
    batch_size,
    cannot_export,
    keeps_batch_state,
    per_sample_now,
    run_inner,
)
from flowdl._describe import describe_value
from flowdl._errors import ControlFlowError, passes_through
from flowdl._executor.plan import plan_of
from flowdl._executor.state import WANTED

LoopMode = Literal["for", "while", "until"]


class Loop(ControlNode):
    """The node of ``.loop(body).for_(n)``, ``.while_(cond, max_iter)``, ``.until(cond, max_iter)``.

    Each iteration is ``state = body(state, *refs)``; references are the same at
    every iteration. Backward runs through every iteration.

    A halt condition ``cond(state)`` (without references) returns a scalar (the
    whole batch halts when it is positive) or a ``[B]`` / ``[B, 1]`` tensor (each
    sample halts when its entry is positive). A halted sample keeps the state of
    its last iteration, and gradients reach only the iterations it ran. Once some
    samples have halted, the body runs on the active samples only, exactly as if
    each sample ran alone: it receives the active rows of the per-sample
    references (values computed from this call's stream) and the shared ones
    (auxiliary graph inputs, values tagged ``shared``) whole; the graph tells the
    loop which is which (`bind_refs`), nothing is guessed from shapes. A body
    that keeps per-batch state (a nested graph with forward-reference state, or a
    module with ``reset()`` or ``trace()``) runs on the whole batch instead, and
    the halted rows of the state and of the body's own state are put back after
    each iteration (on a first call, the rows of a sample that halted keep the
    body's initial state); there, a body whose output overflows on a halted row
    (``exp`` of a large state, say) can make gradients NaN. The decision is not
    differentiable (the condition runs under ``torch.no_grad()``).

    After a call, `iterations` holds how many iterations each sample ran and
    `traces` what a body with a ``trace()`` method reported.

    Attributes:
        body: the loop body.
        cond: the halt condition (``None`` for ``for_``).
        mode: ``"for"``, ``"while"`` or ``"until"``.
        max_iter: the number of iterations for ``for_``, the limit otherwise.
    """

    _body_fn: Callable[..., Any]
    _roles: ClassVar[dict[str, str]] = {"body": "loop body", "cond": "halt condition"}
    _watched_attributes: ClassVar[tuple[str, ...]] = ("body", "cond")

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
        # What a call observes, in a plain object: nn.Module's attribute hooks cost
        # microseconds per write, and the loop writes these on every call.
        self._last = _LastCall()
        self._refresh(set())
        self._start_watching()

    def _refresh(self, sources: set[int]) -> None:
        """Derive from the body what every iteration reads (also after it is replaced)."""
        body = self.body
        self._whole_batch = keeps_batch_state(body)
        self._body_cells = _state_cells(body)
        trace = getattr(body, "trace", None)
        self._trace: Callable[[], Any] | None = trace if callable(trace) else None
        object.__setattr__(self, "_body_fn", body)  # read every iteration: no module lookup

    def _optional(self, name: str) -> bool:
        return name == "cond" and self.mode == "for"

    def rebuilt(self) -> Loop:
        return Loop(self.body, self.mode, self.max_iter, self.cond)

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
        last = self._last
        if isinstance(last.counts, Tensor):
            return last.counts
        return torch.full((last.batch,), last.counts, dtype=torch.int64, device=last.device)

    @property
    def traces(self) -> list[Any]:
        """``[body.trace()]`` before the first iteration and after each one, from the
        last call (empty if the body has no ``trace()``)."""
        return self._last.traces

    def forward(self, state: Any, *refs: Any) -> Any:
        if torch.compiler.is_compiling():  # traced (torch.compile, torch.export)
            if self.mode == "for":  # nothing to observe: `Graph.iterations` knows the count
                return self._traced(state, refs)
            if torch.compiler.is_exporting():
                raise cannot_export(
                    f"a .{self.mode}{'_' if self.mode == 'while' else ''}(cond, "
                    f"max_iter={self.max_iter}) loop",
                    "how many iterations each sample runs",
                    "export a graph whose loops have fixed counts (.for_(n)), or run this "
                    "graph with g.compile() (fast mode keeps halting loops out of compiled code)",
                )
        last = self._last
        if isinstance(state, Tensor):
            last.batch = int(state.shape[0]) if state.dim() > 0 else 1
            last.device = state.device
        trace = self._trace
        last.traces = [trace()] if trace is not None else []
        if self.mode == "for":
            return self._run_for(state, refs)
        return self._run_halting(state, refs, check_first=self.mode == "while")

    # ------------------------------------------------------------------ runs

    def _traced(self, state: Any, refs: tuple[Any, ...]) -> Any:
        """The iterations of ``for_`` as a tracer sees them: a plain unrolled loop."""
        for _ in range(self.max_iter):
            state = self.call_receiver(state, refs)
        return state

    def _iterate(self, state: Any, refs: tuple[Any, ...], i: int) -> Any:
        try:
            state = self.call_receiver(state, refs)
        except Exception as error:
            if passes_through(error):
                raise
            self._body_failed(error, i)
        if self._trace is not None:
            self._last.traces.append(self._trace())
        return state

    def _body_failed(self, error: Exception, i: int) -> NoReturn:
        """Re-raise a failure of the body as `run_inner` would, naming the iteration."""
        where = f"at iteration {i} (0-based) of at most {self.max_iter}"
        run_inner("loop body", self._body_fn, where, _reraise, error)
        raise AssertionError("run_inner re-raises")  # pragma: no cover

    def _run_for(self, state: Any, refs: tuple[Any, ...]) -> Any:
        ctx = self.context()
        body = self._body_fn
        trace = self._trace
        traces = self._last.traces
        step: Callable[[Any], Any] = body
        if refs:
            step = partial(self.call_receiver, refs=refs)
        i = 0
        try:
            for i in range(self.max_iter):  # noqa: B007 - `i` names a failing iteration
                if ctx is not None:
                    ctx.check()
                state = step(state)
                if trace is not None:
                    traces.append(trace())
        except Exception as error:
            if passes_through(error):
                raise
            self._body_failed(error, i)
        self._last.counts = self.max_iter
        return state

    def _run_halting(self, state: Any, refs: tuple[Any, ...], check_first: bool) -> Any:
        ctx = self.context()
        active: Tensor | None = None  # None: every sample is still running
        counts: Tensor | int = 0
        for i in range(self.max_iter):
            if check_first:
                if ctx is not None:
                    ctx.check()
                active, done = self._decide(state, refs, active, i)
                if done:
                    break
            elif i > 0 and ctx is not None:
                ctx.check()
            if active is None:
                state = self._iterate(state, refs, i)
                counts = counts + 1
            else:
                state = self._iterate_active(state, refs, active, i)
                counts = counts + active.long()
            if not check_first and i + 1 < self.max_iter:
                active, done = self._decide(state, refs, active, i)
                if done:
                    break
        self._last.counts = counts
        return state

    def _iterate_active(
        self, state: Tensor, refs: tuple[Any, ...], active: Tensor, i: int
    ) -> Tensor:
        """One iteration for the active samples; halted samples keep their state."""
        if self._whole_batch:
            return self._iterate_masked(state, refs, active, i)
        rows = active.nonzero().squeeze(1)
        part_refs = tuple(
            r.index_select(0, rows)
            if isinstance(r, Tensor) and r.dim() and r.shape[0] != 1 and per_sample_now(flag)
            else r  # shared, or one row broadcast to every sample
            for r, flag in zip(refs, self._ref_rows, strict=True)
        )
        part = state.index_select(0, rows)
        new = self._check_shape(self._iterate(part, part_refs, i), part, i)
        return state.index_copy(0, rows, new)

    def _iterate_masked(
        self, state: Tensor, refs: tuple[Any, ...], active: Tensor, i: int
    ) -> Tensor:
        """A stateful body runs on the whole batch; halted rows, and their rows of the
        body's own state, are put back to their values from before the iteration."""
        cells = self._body_cells
        before = [cell.value for cell in cells]
        firsts = [cell for cell, old in zip(cells, before, strict=True) if old is None]
        asked = [cell.first for cell in firsts]  # WANTED by an enclosing loop too, or None
        version = state._version
        for cell in firsts:
            cell.first = WANTED  # a first call: keep what the body reads instead of state
        try:
            new = self._check_shape(self._iterate(state, refs, i), state, i)
            initial = [cell.first for cell in cells]
        finally:
            for cell, prior in zip(firsts, asked, strict=True):
                if prior is None:  # nobody else waits for the initial value
                    cell.first = None
        if new.data_ptr() == state.data_ptr() and state._version != version:
            raise ControlFlowError(
                f"the loop body changed the state in place at iteration {i} (0-based), so the "
                "halted samples cannot keep theirs",
                expected="a body returning a new tensor (x = x * 2, not x.mul_(2))",
                received="the input tensor itself, modified",
                fix="write the body out of place",
            )
        for cell, old, first in zip(cells, before, initial, strict=True):
            value = cell.value
            if old is None:  # no state yet: the halted rows keep the body's initial state
                old = first
            if (
                isinstance(value, Tensor)
                and isinstance(old, Tensor)
                and value.dim() > 0
                and value.shape[0] == state.shape[0]
                and _broadcasts(old, value)  # an init of shape [1, ...] holds for every row
            ):
                cell.value = torch.where(_rows(active, value), value, old)
        return torch.where(_rows(active, new), new, state)

    def _check_shape(self, new: Any, old: Tensor, i: int) -> Tensor:
        if isinstance(new, Tensor) and new.shape == old.shape:
            return new
        raise ControlFlowError(
            f"per-sample halting needs the loop body to keep the state's shape, but "
            f"iteration {i} (0-based) changed it",
            expected=f"{describe_value(old)} (the halted samples keep this value)",
            received=describe_value(new),
            fix="make the body return a state shaped like its input, or halt the whole "
            "batch at once with a scalar condition",
        )

    # -------------------------------------------------------------- halting

    def _decide(
        self, state: Any, refs: tuple[Any, ...], active: Tensor | None, i: int
    ) -> tuple[Tensor | None, bool]:
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
            self._check_rows(refs, batch)
            running = halt.reshape(batch) <= 0
            active = running if active is None else active & running
            return active, not bool(active.any())
        if halt.numel() == 1:
            return active, bool(halt.reshape(()) > 0)
        raise self._bad_halt(state, halt)

    def _check_rows(self, refs: tuple[Any, ...], batch: int) -> None:
        """Per-sample halting cuts the per-sample references to the active rows: each
        must have one row per sample (checked at every per-sample decision, so the
        error never depends on which samples happen to halt)."""
        for name, ref, flag in zip(self._ref_names, refs, self._ref_rows, strict=True):
            if (
                isinstance(ref, Tensor)
                and ref.dim()
                and ref.shape[0] not in (batch, 1)
                and per_sample_now(flag)
            ):
                raise ControlFlowError(
                    f"the reference {name!r} of a per-sample halting loop is per-sample "
                    "(computed from the stream, or an input declared per_sample), so its "
                    "rows are taken as the samples, but it does not have one row per sample",
                    expected=f"a tensor of shape [{batch}, ...] (cut to the active samples "
                    "as they halt) or [1, ...] (the same row for every sample), or a "
                    "reference declared shared",
                    received=describe_value(ref),
                    fix=f"if every sample reads all of it, declare it with "
                    f".tag({name!r}, shared=True) (or pass it as an auxiliary input: "
                    "those are shared unless declared per_sample)",
                )

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


def _broadcasts(old: Tensor, new: Tensor) -> bool:
    """Whether `old` broadcasts to the shape of `new` (the same shape, or rows of 1)."""
    if old.dim() > new.dim():
        return False
    return all(a in (1, b) for a, b in zip(reversed(old.shape), reversed(new.shape), strict=False))


def _rows(active: Tensor, like: Tensor) -> Tensor:
    """The `[B]` mask shaped to select rows of `like`: ``[B, 1, ...]``."""
    return active.reshape(active.shape + (1,) * (like.dim() - 1))


def _state_cells(fn: Any) -> list[Any]:
    """The forward-reference state cells of the graphs inside `fn`."""
    if not isinstance(fn, nn.Module):
        return []
    plans = (plan_of(module) for module in fn.modules())
    return [cell for plan in plans if plan is not None for cell in plan.cells.values()]


class _LastCall(threading.local):
    """What the loop observed in the last call of each thread.

    Per thread, so that a thread reads its own call's counts and traces, not those
    of a call another thread made meanwhile. Copies and pickles start empty.
    """

    def __init__(self) -> None:
        self.batch = 0
        self.counts: Tensor | int = 0
        self.device = torch.device("cpu")
        self.traces: list[Any] = []

    def __reduce__(self) -> tuple[type[_LastCall], tuple[()]]:
        return _LastCall, ()


def _reraise(error: Exception) -> None:
    raise error
