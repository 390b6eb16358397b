"""Short, readable descriptions of modules and values for messages and reprs."""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

_MAX_INLINE = 72


def type_name(obj: Any) -> str:
    """The name a node built from `obj` is known by (``Linear``, ``relu``, ``lambda``)."""
    if isinstance(obj, nn.Module):
        return type(obj).__name__
    name = getattr(obj, "__name__", None)
    if isinstance(name, str):
        cleaned = re.sub(r"\W+", "", name)
        return cleaned or "fn"
    return type(obj).__name__


def describe_module(obj: Any) -> str:
    """A one-line description of a module or callable, as the user wrote it.

    A module whose class defines ``short_description()`` (a flowdl graph: ``Graph
    'encoder'``, ``Graph(3 nodes)``) is described by it.
    """
    if isinstance(obj, nn.Module):
        short = getattr(type(obj), "short_description", None)
        if callable(short):
            return str(short(obj))
        text = repr(obj)
        if "\n" not in text and len(text) <= _MAX_INLINE:
            return text
        return f"{type(obj).__name__}(...)"
    if isinstance(obj, type):
        return f"the class {obj.__module__}.{obj.__qualname__}"
    qualname = getattr(obj, "__qualname__", None)
    if isinstance(qualname, str):
        module = getattr(obj, "__module__", None)
        prefix = "torch." if module in ("torch", "torch._C._VariableFunctions") else ""
        return prefix + qualname
    text = repr(obj)
    if "\n" not in text and len(text) <= _MAX_INLINE:
        return text
    return type(obj).__name__


def describe_value(value: Any) -> str:
    """Describe a value flowing through a graph: ``Tensor[4, 16] float32`` and so on."""
    if isinstance(value, torch.Tensor):
        shape = ", ".join(str(d) for d in value.shape)
        dtype = str(value.dtype).removeprefix("torch.")
        device = "" if value.device.type == "cpu" else f" {value.device}"
        return f"Tensor[{shape}] {dtype}{device}"
    if value is None:
        return "None"
    if isinstance(value, (tuple, list)):
        inner = ", ".join(describe_value(v) for v in value[:4])
        more = ", ..." if len(value) > 4 else ""
        return f"{type(value).__name__}({inner}{more})"
    return type(value).__name__


def plural(n: int, word: str, suffix: str = "s") -> str:
    """``plural(1, "branch", "es")`` -> ``"1 branch"``, ``plural(3, ...)`` -> ``"3 branches"``."""
    return f"{n} {word}{'' if n == 1 else suffix}"


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (``""`` for an empty one)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else ""
