"""Replacing submodules: what a graph or a construct hears when a child is swapped.

A built graph runs a plan that holds its node modules directly, and the construct
modules (loops, gates, switches, maps) cache their inner modules outside
``_modules``. Tools that convert models in place (``nn.SyncBatchNorm.
convert_sync_batchnorm``, eager-mode quantization, adapter wrappers, a user's
``g.Linear_0 = ...``) swap children through ``add_module``, attribute assignment or
``module._modules[name] = new``. All three write the child into ``_modules``, so a
`Replaceable` module holds its children in a `ModuleSlots` dict that hears every
write: it checks the new child, lets the module refresh what it derives from its
children, and tells the flowdl modules that hold this one (its *owners*: the
graphs and constructs above it, also through plain containers such as
``nn.Sequential``), innermost first. A failed check puts everything back.

Nothing of this runs in a forward pass; it runs when a child is replaced.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from torch import nn

from flowdl._describe import describe_module
from flowdl._errors import BuildError
from flowdl._watch.messages import replacement_error

__all__ = ["ModuleSlots", "Replaceable", "live_owners"]

_MISSING: Any = object()


class ModuleSlots(dict):  # type: ignore[type-arg]
    """The ``_modules`` of a `Replaceable` module: a dict that reports replaced children.

    Writes of a child that is already there (``convert_sync_batchnorm`` re-adds every
    child) cost a dictionary lookup. It pickles and copies as a plain dict. Item
    assignment and deletion are heard; ``update()``, ``setdefault()`` and ``pop()``
    are not (PyTorch writes children through item assignment).
    """

    __slots__ = ("_owner", "displaced")

    def __init__(self, owner: Replaceable, items: Iterable[tuple[str, Any]] = ()) -> None:
        super().__init__(items)
        self._owner = weakref.ref(owner)
        # (name, value) of a plain attribute that nn.Module.__setattr__ is turning into a
        # child: it leaves the instance dict before the child arrives here.
        self.displaced: tuple[str, Any] | None = None

    def __setitem__(self, name: str, module: Any) -> None:
        owner = self._owner()
        if owner is None or dict.get(self, name, _MISSING) is module:
            dict.__setitem__(self, name, module)
            return
        if name in self:
            before, present = dict.__getitem__(self, name), True
        else:
            before, present = owner._plain_value(name), False
        displaced = self.displaced if self.displaced and self.displaced[0] == name else None

        def restore() -> None:
            if present:
                dict.__setitem__(self, name, before)
                return
            dict.pop(self, name, None)
            if displaced is not None:
                owner.__dict__[name] = displaced[1]

        replace_child(
            owner, name, before, module, lambda: dict.__setitem__(self, name, module), restore
        )

    def __delitem__(self, name: str) -> None:
        owner = self._owner()
        before = dict.__getitem__(self, name)
        if owner is None:
            dict.__delitem__(self, name)
            return
        replace_child(
            owner,
            name,
            before,
            None,
            lambda: dict.__delitem__(self, name),
            lambda: dict.__setitem__(self, name, before),
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return dict, (dict(self),)


class Replaceable(nn.Module):
    """A module whose children can be replaced after it is built.

    Subclasses (`fl.Graph`, the construct modules, `Callables`) call
    `_start_watching` at the end of ``__init__`` and implement the hooks
    `_check_value`, `_rebind` and `_refresh`.
    """

    _watched_attributes: ClassVar[tuple[str, ...]] = ()
    """Plain (non-module) attributes whose assignment counts as a replacement."""

    def _start_watching(self) -> None:
        """Hear replaced children from now on, and tell the flowdl modules below about us."""
        state = self.__dict__
        if not isinstance(state["_modules"], ModuleSlots):
            state["_modules"] = ModuleSlots(self, state["_modules"].items())
        state.setdefault("_owners", [])
        adopt(self, self._modules.values())

    # ------------------------------------------------------------ the hooks

    def _plain_value(self, name: str) -> Any:
        """What `name` stood for before a child of that name arrived (``None``: nothing)."""
        slots = self.__dict__["_modules"]
        displaced = slots.displaced if isinstance(slots, ModuleSlots) else None
        return displaced[1] if displaced is not None and displaced[0] == name else None

    def _check_value(self, name: str, before: Any, after: Any) -> None:
        """Raise `TypeError` when `after` cannot take the place of `before` at all."""

    def _rebind(self, name: str, before: Any, after: Any) -> Callable[[], None]:
        """Point this module's own bookkeeping at `after`; return what undoes it."""
        return _nothing

    def _refresh(self, sources: set[int]) -> None:
        """Re-derive what this module caches from its children.

        `sources` holds the ids of the modules that changed: the new child, or the
        flowdl modules below that were refreshed. A graph checks the nodes holding
        them as `build()` would and raises `BuildError` if one cannot work.
        """

    def _describe_child(self, name: str) -> str:
        """How messages name the child `name`: ``'body' of Loop(...)``."""
        return f"{name!r} of {describe_module(self)}"

    # ---------------------------------------------------- nn.Module's entries

    def __setattr__(self, name: str, value: Any) -> None:
        # Plain attributes pay a type check and a dict lookup; nn.Module.__setattr__ is
        # called directly (no other base class of a graph or construct defines one).
        state = self.__dict__
        if isinstance(value, nn.Module):
            slots = state.get("_modules")
            if isinstance(slots, ModuleSlots) and name in state:
                slots.displaced = (name, state[name])
                try:
                    nn.Module.__setattr__(self, name, value)
                finally:
                    slots.displaced = None
                return
        elif name in self._watched_attributes and "_owners" in state:
            self._replace_plain(name, value)
            return
        else:
            slots = state.get("_modules")
            if value is not None and slots is not None and name in slots:
                self._check_value(name, slots[name], value)
        nn.Module.__setattr__(self, name, value)

    def add_module(self, name: str, module: Any) -> None:
        slots = self.__dict__.get("_modules")
        if not isinstance(module, (nn.Module, type(None))) and slots is not None and name in slots:
            self._check_value(name, slots[name], module)
        super().add_module(name, module)

    def _replace_plain(self, name: str, value: Any) -> None:
        """Assign a plain callable to a watched attribute (a loop body that is a function)."""
        state = self.__dict__
        slots = state["_modules"]
        if name in slots:  # a child module: nn.Module refuses plain values; say why
            self._check_value(name, slots[name], value)
            nn.Module.__setattr__(self, name, value)
            return
        before = state.get(name, _MISSING)

        def commit() -> None:
            state[name] = value

        def restore() -> None:
            if before is _MISSING:
                state.pop(name, None)
            else:
                state[name] = before

        if before is value:
            return
        replace_child(self, name, None if before is _MISSING else before, value, commit, restore)

    def __getstate__(self) -> dict[str, Any]:
        # Owners are weak references (they neither pickle nor belong to a copy):
        # every module re-registers with the flowdl modules below it on unpickling.
        state = super().__getstate__()  # type: ignore[no-untyped-call]
        state["_modules"] = dict(state["_modules"])
        state.pop("_owners", None)
        return state  # type: ignore[no-any-return]

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)  # type: ignore[no-untyped-call]
        self._start_watching()


# ---------------------------------------------------------------- replacing


def replace_child(
    owner: Replaceable,
    name: str,
    before: Any,
    after: Any,
    commit: Callable[[], None],
    restore: Callable[[], None],
) -> None:
    """Put `after` in the place of `before`, refresh `owner` and every owner above it.

    A `BuildError` from a refresh (the new module cannot work where it is) puts
    `before` back, refreshes again, and is re-raised naming the replacement.
    """
    owner._check_value(name, before, after)
    commit()
    undo = owner._rebind(name, before, after)
    try:
        owner._refresh({id(after)})
        propagate(owner)
    except BaseException as error:
        restore()
        undo()
        owner._refresh(set())
        propagate(owner)
        if isinstance(error, BuildError):
            raise replacement_error(owner._describe_child(name), before, after, error) from error
        raise
    if isinstance(before, nn.Module):
        disown(owner, before)
    adopt(owner, owner._modules.values())


def _nothing() -> None:
    return None


# ------------------------------------------------------------------ owners


def adopt(owner: Replaceable, modules: Iterable[Any]) -> None:
    """Register `owner` with the nearest `Replaceable` modules in `modules`' subtrees."""
    for found in _nearest(modules):
        owners: list[weakref.ref[Replaceable]] = found.__dict__.setdefault("_owners", [])
        if not any(ref() is owner for ref in owners):
            owners[:] = [ref for ref in owners if ref() is not None]
            owners.append(weakref.ref(owner))


def disown(owner: Replaceable, module: nn.Module) -> None:
    """Forget `owner` in the nearest `Replaceable` modules of `module`'s subtree."""
    for found in _nearest([module]):
        owners = found.__dict__.get("_owners")
        if owners:
            owners[:] = [ref for ref in owners if ref() is not None and ref() is not owner]


def live_owners(module: nn.Module) -> list[Replaceable]:
    """The flowdl modules that hold `module` (directly or through plain containers)."""
    found = (ref() for ref in module.__dict__.get("_owners", ()))
    return [owner for owner in found if owner is not None]


def _nearest(modules: Iterable[Any]) -> list[Replaceable]:
    """The `Replaceable` modules reached from `modules` without passing another one."""
    found: list[Replaceable] = []
    seen: set[int] = set()
    stack = [m for m in modules if isinstance(m, nn.Module)]
    while stack:
        module = stack.pop()
        if id(module) in seen:
            continue
        seen.add(id(module))
        if isinstance(module, Replaceable):
            found.append(module)
        else:
            stack.extend(m for m in module._modules.values() if m is not None)
    return found


def propagate(start: Replaceable) -> None:
    """Tell every owner above `start` that something below it changed, innermost first."""
    finished: list[Replaceable] = []
    state: dict[int, bool] = {}  # id -> finished
    stack: list[tuple[Replaceable, bool]] = [(start, False)]
    while stack:  # depth-first along the owner links; a module finishes after its owners
        module, done = stack.pop()
        if done:
            state[id(module)] = True
            finished.append(module)
            continue
        if id(module) in state:
            continue
        state[id(module)] = False
        stack.append((module, True))
        stack.extend((owner, False) for owner in live_owners(module) if id(owner) not in state)
    changed = {id(start)}
    for module in reversed(finished):
        if module is start:
            continue
        module._refresh(changed)
        changed.add(id(module))
