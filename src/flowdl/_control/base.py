"""What loops, gates, switches and maps share: inner modules, references, the context."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from flowdl._context import Context, current_context
from flowdl._describe import describe_module, describe_value
from flowdl._errors import ControlFlowError, passes_through
from flowdl._executor.plan import plan_of
from flowdl._executor.state import StateRead
from flowdl._watch.constructs import ConstructReplacement, EntriesReplacement


class Grouped(Protocol):
    """Fast mode's batched run of a construct's identical parts (`flowdl._executor.fusion`)."""

    def accepts(self, x: Any) -> bool:
        """Whether the batched run gives what the parts give one by one on rows of `x`."""
        ...

    def run_sorted(self, rows: Tensor, counts: Sequence[int]) -> Tensor:
        """Each part on its rows (``counts[i]`` rows for part ``i``, in order)."""
        ...


class Callables(EntriesReplacement):
    """An ordered list of modules or plain callables (experts, branches).

    The modules are registered as children ``"0"``, ``"1"``, ... so their parameters
    belong to the graph; plain callables are only called. Replacing child ``"i"``
    (``add_module``, ``setattr``) replaces entry ``i``.

    Args:
        fns: the entries.
        role: what an entry is, for messages (``"expert"``, ``"branch"``).
    """

    def __init__(self, fns: Sequence[Callable[..., Any]], role: str = "entry") -> None:
        super().__init__()
        self.fns = tuple(fns)
        self.role = role
        for i, fn in enumerate(self.fns):
            if isinstance(fn, nn.Module):
                self.add_module(str(i), fn)
        self._start_watching()

    def __len__(self) -> int:
        return len(self.fns)

    def __getitem__(self, i: int) -> Callable[..., Any]:
        return self.fns[i]

    def __iter__(self) -> Iterator[Callable[..., Any]]:
        return iter(self.fns)


class ControlNode(ConstructReplacement):
    """Base of the construct modules: one node of the graph running inner modules.

    The builder wires `Flow.using` references to one inner callable, the
    *receiver* (a loop's body, a gate's router, a switch's selector, a map's body);
    the graph tells the node their names when it is built (`bind_refs`).

    An inner module can be replaced like any submodule (``loop.body = m``,
    ``gate.experts.add_module("1", m)``): the construct refreshes what it caches
    from it, and the graph holding it checks it and recompiles its plan.
    """

    def __init__(self) -> None:
        super().__init__()
        self._ref_names: tuple[str, ...] = ()
        self._ref_rows: tuple[bool | StateRead, ...] = ()
        self._named = False

    def bind_refs(
        self,
        names: Sequence[str],
        named: bool,
        per_sample: Sequence[bool | StateRead] | None = None,
    ) -> None:
        """The tags of the references, in order; `named`: call ``forward_named``.

        `per_sample` says, for each reference, whether its rows are the samples of
        the stream (values computed from this call's stream) or whether it is shared
        by every sample (auxiliary inputs, values declared shared); a construct that
        runs on some samples only (per-sample halting) cuts the rows of the first
        kind and passes the second whole. A `StateRead` stands for a forward
        reference: per-sample, except on a first call that reads a declared tensor
        init as it is (`per_sample_now`). Without it every reference is per-sample.
        """
        self._ref_names = tuple(names)
        self._named = named
        rows = (True,) * len(self._ref_names) if per_sample is None else tuple(per_sample)
        self._ref_rows = rows

    def inner(self) -> list[tuple[str, Callable[..., Any]]]:
        """``(role, callable)`` for every inner callable, the receiver first."""
        raise NotImplementedError

    @property
    def receiver(self) -> Callable[..., Any]:
        """The inner callable that receives the node's references."""
        return self.inner()[0][1]

    def rebuilt(self) -> ControlNode:
        """A new node of the same construct over the same inner modules.

        Each graph built from a flow gets its own, so what one graph observes
        (loop traces and counts) is not overwritten by another.
        """
        raise NotImplementedError

    def call_receiver(self, x: Any, refs: tuple[Any, ...]) -> Any:
        """Call the receiver with the stream and the references, as a node would be."""
        if self._named and refs:
            return self.receiver.forward_named(  # type: ignore[attr-defined]
                x, dict(zip(self._ref_names, refs, strict=True))
            )
        return self.receiver(x, *refs)

    @staticmethod
    def context() -> Context | None:
        """The context of the running graph call, if any (none under ``torch.compile``)."""
        if torch.compiler.is_compiling():
            return None
        return current_context()

    def reset_targets(self) -> list[Callable[..., Any]]:
        """The inner callables whose ``reset(batch_size, device)`` this node forwards."""
        return []

    def reset(self, batch_size: int, device: torch.device) -> None:
        """Call ``reset(batch_size, device)`` on each `reset_targets` that has one, once each."""
        seen: set[int] = set()
        for fn in self.reset_targets():
            reset = getattr(fn, "reset", None)
            if callable(reset) and id(fn) not in seen:
                seen.add(id(fn))
                reset(batch_size, device)


def per_sample_now(flag: bool | StateRead) -> bool:
    """Whether a reference bound with `flag` has one row per sample in this call."""
    if isinstance(flag, bool):
        return flag
    return not (flag.cell.value is None and isinstance(flag.init, Tensor))


def run_inner(
    role: str, fn: Callable[..., Any], where: str, call: Callable[..., Any], *args: Any
) -> Any:
    """``call(*args)``, which runs the inner callable `fn` (the `role` of the construct).

    A failure becomes a `ControlFlowError` naming `fn` and `where` it failed;
    cancellation passes through unchanged.
    """
    try:
        return call(*args)
    except Exception as error:
        if passes_through(error):
            raise
        raise ControlFlowError(
            f"the {role} ({describe_module(fn)}) raised {type(error).__name__}"
            + (f" {where}" if where else ""),
            received=_first_line(error),
            fix=getattr(error, "fix", None)
            or "see the chained exception above for the inner failure",
        ) from error


def keeps_batch_state(fn: Any) -> bool:
    """Whether `fn` holds per-batch state: a graph with forward-reference state, or a
    module with ``reset()`` or ``trace()`` somewhere inside."""
    if not isinstance(fn, nn.Module):
        return False
    if carries_state(fn):
        return True
    for module in fn.modules():
        if isinstance(module, ControlNode):
            continue  # its reset() only forwards to inner modules, which are visited too
        if callable(getattr(module, "reset", None)) or callable(getattr(module, "trace", None)):
            return True
    return False


def carries_state(fn: Any) -> bool:
    """Whether `fn` is or holds a graph with forward-reference state."""
    if not isinstance(fn, nn.Module):
        return False
    return any((plan := plan_of(m)) is not None and plan.cells for m in fn.modules())


def stateful_on_some_samples(construct: str, role: str, i: int, fn: Any) -> ControlFlowError:
    """The error for per-sample routing to an inner graph that keeps forward-reference state."""
    return ControlFlowError(
        f"{construct} routes some samples to {role} {i} ({describe_module(fn)}), which keeps "
        "state from call to call, row by row: with a different subset of samples at every "
        "call, its rows would belong to other samples",
        expected=f"{role}s without forward-reference state when samples are routed one by one",
        received=f"{role} {i}: {describe_module(fn)}",
        fix=f"keep the state outside the {role}s (a forward reference around the whole "
        "construct), or route the whole batch at once",
    )


def cannot_export(what: str, decides: str, fix: str) -> ControlFlowError:
    """The error for a construct that `torch.export` cannot capture: `what` decides from
    the values at run time what `decides` says (how many iterations, which samples go
    where)."""
    return ControlFlowError(
        f"{what} cannot be exported: it decides at run time, from the values, {decides}",
        expected="a graph of fixed structure for torch.export: modules, merges, residuals, "
        "loops with a fixed count (.for_(n)), dense gates, whole-batch switches",
        received=f"{what} in the exported graph",
        fix=fix,
    )


def batch_size(value: Any, role: str, why: str) -> int:
    """The leading dimension of `value`, which must be a tensor with one."""
    if isinstance(value, Tensor) and value.dim() > 0:
        return int(value.shape[0])
    raise ControlFlowError(
        f"{why} needs the {role} to be a tensor with a batch dimension",
        expected="a tensor of shape [B, ...]",
        received=describe_value(value),
        fix="give the construct a batched tensor, or decide for the whole batch with a scalar",
    )


def _first_line(error: BaseException) -> str:
    """The error's first line; for a chain of wrapped errors, the root cause's too."""
    root = error
    while root.__cause__ is not None:
        root = root.__cause__
    lines = [_line(error)]
    if root is not error and str(root).strip().split("\n")[0] not in lines[0]:
        lines.append(f"root cause: {_line(root)}")
    return "\n".join(lines)


def _line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__
