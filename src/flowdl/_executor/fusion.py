"""Horizontal fusion (fast mode): identical experts or branches run as one batched computation.

When the branches of a per-sample ``.switch`` or the experts of a sparse ``.gate``
are all the same chain of layers — `nn.Linear` and parameterless elementwise
activations, with the same shapes (a Linear–GELU–Linear expert, say), whether
written as a module, an `nn.Sequential` or a nested graph without tags or state —
fast mode runs them together (`StackedChains`): the rows of each part are padded
into one ``[parts, capacity, features]`` tensor, each Linear becomes one
``baddbmm`` over weights stacked at every call with `torch.stack`, and the rows are
taken back out. Autograd flows through the stack to each module's own parameters,
so optimizers, ``state_dict`` and checkpoints see nothing different; a part that
receives no row takes no part in the computation (its gradient stays ``None``, as
unfused). The result equals the unfused one up to the rounding of the batched
products.

Anything that would make the two differ falls back to the construct's own loop:
hooks on any of the modules (or global module hooks), chains that are not identical
(`StackedChains.of` returns ``None`` at compile time), or chains changed since
(checked at every call: an `nn.Sequential` whose children changed — a layer replaced,
appended or removed —, a Linear whose bias, weight shape, dtype or device changed, or
an activation whose settings changed).
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules import module as module_globals

from flowdl._executor.plan import Plan, plan_of

__all__ = ["ELEMENTWISE", "Link", "StackedChains", "chain_of"]

ELEMENTWISE: tuple[type[nn.Module], ...] = (
    nn.GELU,
    nn.ReLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.SiLU,
    nn.Identity,
    nn.LeakyReLU,
    nn.ELU,
    nn.Softplus,
    nn.Mish,
)
"""Parameterless modules applied element by element: they run on the stacked rows as is."""


def _linear_chain(plan: Plan) -> list[Callable[..., Any]] | None:
    """The steps of a plan that is one straight chain from its single input, or ``None``."""
    if plan.n_inputs != 1 or plan.cells or plan.resets or plan.tag_slots:
        return None
    slot = 0
    fns = []
    for step in plan.steps:
        if step.b >= 0 or step.a != slot:
            return None
        fns.append(step.fn)
        slot = step.out
    return fns if slot == plan.out_slot and fns else None


Link = tuple[Any, str, Any]
"""What a chain was read from, checked before every fused call: ``(sequential,
"_modules", items)`` for an `nn.Sequential` (its children, ``tuple(_modules.items())``,
must still be these names and modules, in this order: none replaced, added or
removed), ``(graph, "_plan", plan)`` for a nested graph (``graph._plan is plan``)."""


def chain_of(fn: Any, links: list[Link] | None = None) -> list[nn.Module] | None:
    """`fn` as a flat list of Linear and elementwise modules, or ``None``.

    Args:
        fn: a module, an `nn.Sequential`, or a nested graph.
        links: collects what the chain was read from (`Link`).

    Example:
        >>> chain_of(nn.Sequential(nn.Linear(2, 3), nn.GELU()))
        [Linear(in_features=2, out_features=3, bias=True), GELU(approximate='none')]
        >>> chain_of(nn.LayerNorm(3)) is None
        True
    """
    links = [] if links is None else links
    if type(fn) is nn.Linear or type(fn) in ELEMENTWISE:
        return [fn]
    parts: list[Any]
    if type(fn) is nn.Sequential:
        parts = list(fn)
        links.append((fn, "_modules", tuple(fn._modules.items())))
    elif (plan := plan_of(fn)) is not None:
        found = _linear_chain(plan)
        if found is None:
            return None
        parts = found
        links.append((fn, "_plan", plan))
    else:
        return None
    flat: list[nn.Module] = []
    for part in parts:
        inner = chain_of(part, links)
        if inner is None:
            return None
        flat.extend(inner)
    return flat


def _current(links: Sequence[Link]) -> bool:
    """Whether every part is still made of the modules the chains were read from."""
    for owner, name, value in links:
        if name == "_plan":
            if owner.__dict__.get("_plan") is not value:
                return False
        elif tuple(owner._modules.items()) != value:  # modules compare by identity
            return False
    return True


def any_global_hooks() -> bool:
    """Whether a global module hook is set (``torch.nn.modules.module.register_module_*``)."""
    return bool(
        module_globals._global_forward_hooks
        or module_globals._global_forward_pre_hooks
        or module_globals._global_backward_hooks
        or module_globals._global_backward_pre_hooks
    )


def has_hooks(module: nn.Module) -> bool:
    """Whether `module` has a forward or backward hook of its own."""
    return bool(
        module._forward_hooks
        or module._forward_pre_hooks
        or module._backward_hooks
        or module._backward_pre_hooks
    )


def _key(module: nn.Module) -> tuple[Any, ...]:
    """What must be equal for two modules to run as one: type, shapes, settings."""
    if isinstance(module, nn.Linear):
        w = module.weight
        return (nn.Linear, tuple(w.shape), module.bias is not None, w.dtype, w.device)
    return (type(module), module.extra_repr())


_MISSING: Any = object()


def _linear_state(m: nn.Linear) -> tuple[Any, Any]:
    """What the fused products rely on for one Linear, read again at every call: its
    weight's shape, dtype and device, and its bias's (or ``None``, for no bias)."""
    params = m._parameters  # not m.weight: Module.__getattr__ would cost most of the check
    w = params.get("weight", _MISSING)
    b = params.get("bias", _MISSING)
    if w is _MISSING:  # not a parameter (a parametrization, say)
        w = m.weight
    if b is _MISSING:
        b = m.bias
    return (w.shape, w.dtype, w.device), None if b is None else (b.shape, b.dtype, b.device)


def _settings(m: nn.Module) -> Callable[[Any], Any] | None:
    """Reads an activation's settings (``approximate``, ``negative_slope``...), or ``None``."""
    names = sorted(k for k in vars(m) if not k.startswith("_") and k != "training")
    return operator.attrgetter(*names) if names else None


def _as_linear(module: nn.Module) -> nn.Linear:
    assert isinstance(module, nn.Linear)
    return module


class StackedChains:
    """Identical chains of layers (one per part), run on the rows of every part at once.

    Attributes:
        chains: each part's modules, in order.
        owners: the callables the chains come from (checked for hooks too).
        links: what the chains were read from (`Link`), checked at every call.
    """

    def __init__(
        self,
        chains: Sequence[Sequence[nn.Module]],
        owners: Sequence[Any],
        links: Sequence[Link] = (),
    ) -> None:
        self.chains = [list(c) for c in chains]
        self.links = tuple(links)
        self.owners = [o for o in owners if isinstance(o, nn.Module)]
        self._stages: list[nn.Module | list[nn.Linear]] = [
            [_as_linear(c[i]) for c in self.chains] if isinstance(m, nn.Linear) else m
            for i, m in enumerate(self.chains[0])
        ]
        chained = [m for c in self.chains for m in c]
        every = itertools.chain(chained, (m for o in self.owners for m in o.modules()))
        self._modules = list({id(m): m for m in every}.values())
        self._linears = [m for m in chained if isinstance(m, nn.Linear)]
        self._settings = [
            (get, m) for m in chained if not isinstance(m, nn.Linear) and (get := _settings(m))
        ]
        self._states = self._read_states()

    def _read_states(self) -> tuple[Any, ...] | None:
        """Each Linear's `_linear_state` and each activation's settings, or ``None``
        where a weight cannot be read (the loop then raises the usual error)."""
        try:
            linears = tuple(_linear_state(m) for m in self._linears)
        except AttributeError:
            return None
        return linears + tuple(get(m) for get, m in self._settings)

    @classmethod
    def of(cls, fns: Sequence[Any]) -> StackedChains | None:
        """The parts `fns` stacked, or ``None`` when they are not identical chains.

        Example:
            >>> mlp = lambda: nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.Linear(8, 4))
            >>> StackedChains.of([mlp(), mlp()]) is not None
            True
            >>> StackedChains.of([mlp(), nn.Sequential(nn.Linear(4, 4))]) is None
            True
        """
        links: list[Link] = []
        chains = [chain_of(fn, links) for fn in fns]
        if len(fns) < 2 or any(c is None for c in chains):
            return None
        found = [c for c in chains if c is not None]
        keys = [[_key(m) for m in c] for c in found]
        if any(k != keys[0] for k in keys) or not any(k[0] is nn.Linear for k in keys[0]):
            return None
        linears = [id(m) for c in found for m in c if isinstance(m, nn.Linear)]
        if len(set(linears)) != len(linears):  # a Linear shared by parts: left unfused
            return None
        return cls(found, fns, links)

    def accepts(self, x: Any) -> bool:
        """Whether the chains can run on rows of `x` as one: a ``[rows, features]`` tensor
        of the weights' dtype and device, and no hooks anywhere."""
        linear = next(m for m in self.chains[0] if isinstance(m, nn.Linear))
        w = linear.weight
        return (
            isinstance(x, Tensor)
            and x.dim() == 2
            and x.shape[1] == w.shape[1]  # else the parts' own loop raises the usual error
            and x.dtype == w.dtype
            and x.device == w.device
            and self.usable()
        )

    def usable(self) -> bool:
        """Whether nothing would see the difference now: the parts are still made of the
        same modules (an `nn.Sequential` can be changed in place unseen), every Linear
        still has the bias (or none), weight shape, dtype and device it was fused with,
        every activation its settings, and no module has a hook."""
        if not _current(self.links) or any_global_hooks():
            return False
        states = self._states
        if states is None or self._read_states() != states:
            return False
        return not any(  # has_hooks, inlined: this runs at every call
            m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks
            for m in self._modules
        )

    def run_sorted(self, rows: Tensor, counts: Sequence[int]) -> Tensor:
        """Each part's chain on its rows: `rows` holds ``counts[0]`` rows for part 0,
        then ``counts[1]`` for part 1, ...; the outputs come back in the same order.
        """
        parts = [i for i, c in enumerate(counts) if c]
        sizes = [counts[i] for i in parts]
        capacity = max(sizes)
        if all(s == capacity for s in sizes):  # no padding: the rows are the stack
            h = self.run_padded(rows.reshape(len(parts), capacity, *rows.shape[1:]), parts)
            return h.reshape(rows.shape[0], *h.shape[2:])
        # Row r of part g goes to slot g * capacity + (r - start of g).
        device = rows.device
        group = torch.repeat_interleave(
            torch.arange(len(parts), device=device), torch.tensor(sizes, device=device)
        )
        starts = torch.tensor([0, *itertools.accumulate(sizes)][:-1], device=device)
        slot = group * capacity + torch.arange(rows.shape[0], device=device) - starts[group]
        padded = rows.new_zeros(len(parts) * capacity, *rows.shape[1:]).index_copy(0, slot, rows)
        h = self.run_padded(padded.reshape(len(parts), capacity, *rows.shape[1:]), parts)
        return h.reshape(len(parts) * capacity, *h.shape[2:]).index_select(0, slot)

    def run_padded(self, h: Tensor, parts: Sequence[int]) -> Tensor:
        """The chains of `parts` on ``h[i]``: ``[len(parts), capacity, features]``."""
        for stage in self._stages:
            if isinstance(stage, nn.Module):
                h = stage(h)
                continue
            layers = [stage[i] for i in parts]
            weight = torch.stack([m.weight for m in layers]).transpose(1, 2)
            biases: list[Tensor] = [m.bias for m in layers if m.bias is not None]
            if not biases:
                h = torch.bmm(h, weight)
            else:
                h = torch.baddbmm(torch.stack(biases).unsqueeze(1), h, weight)
        return h
