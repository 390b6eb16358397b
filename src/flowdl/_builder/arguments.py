"""What the builder accepts as arguments: names (tags, inputs, labels) and node callables."""

from __future__ import annotations

from typing import Any

from torch import nn

from flowdl._errors import BuildError
from flowdl._ir.nodes import BuilderCall

__all__ = ["check_callable", "check_flag", "check_name"]


def check_flag(value: Any, name: str, call: BuilderCall) -> bool:
    """A keyword switch such as ``shared=True``: a `bool`, nothing else."""
    if not isinstance(value, bool):
        raise BuildError(
            f"{call.text}: {name} must be True or False",
            call=str(call),
            expected=f"{name}=True or {name}=False",
            received=f"{type(value).__name__} {value!r}",
            fix=f"pass {name}=True or leave it out",
        )
    return value


def check_name(name: Any, what: str, call: BuilderCall) -> str:
    """A tag, input or label name: a non-empty string without dots or spaces."""
    if not isinstance(name, str):
        raise BuildError(
            f"{call.text} needs {what} names as strings",
            call=str(call),
            expected="a string such as 'hidden'",
            received=f"{type(name).__name__} {name!r}",
            fix=f"pass the {what} name as a string, e.g. {str(name)!r}",
        )
    if not name or "." in name or any(c.isspace() for c in name):
        raise BuildError(
            f"{call.text}: {name!r} is not a valid {what} name",
            call=str(call),
            expected=f"a non-empty {what} name without dots or spaces "
            "(dots separate the parts of a path such as 'encoder.hidden')",
            received=repr(name),
            fix=f"rename it, e.g. {name.replace('.', '_').strip().replace(' ', '_') or 'hidden'!r}",
        )
    return name


def check_callable(obj: Any, call: BuilderCall) -> Any:
    """What may become a node: any `nn.Module` instance or callable (an unbuilt flow is
    built by the builder before it gets here)."""
    if isinstance(obj, type):
        raise BuildError(
            f"{call.name} was given a class, not a module",
            call=str(call),
            expected="an nn.Module instance or a callable taking tensors",
            received=f"the class {obj.__module__}.{obj.__qualname__}",
            fix=f"create an instance: {obj.__name__}(...)",
        )
    if isinstance(obj, nn.Module) or callable(obj):
        return obj
    raise BuildError(
        f"{call.name} needs a module or a callable",
        call=str(call),
        expected="an nn.Module, a callable taking tensors, or an unbuilt fl.Flow",
        received=f"{type(obj).__name__} {obj!r}",
        fix="pass a module such as nn.Linear(4, 4), or a function such as torch.relu",
    )
