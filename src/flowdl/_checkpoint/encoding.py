"""Nested state (an optimizer's, a scheduler's, the user's extras) as JSON plus tensors.

`encode` turns dicts, lists, tuples, numbers, strings, ``None`` and tensors into a
JSON value; each tensor is put into a dict of tensors (stored as safetensors data)
and replaced by a reference. `decode` is the inverse and gives back the same types:
tuples stay tuples, integer dict keys stay integers, infinities and NaN survive.
Anything else (a function, an arbitrary object) is refused with the path to it, so
nothing ever needs unpickling.

The markers, each a one-key JSON object:
``{"__tensor__": name}``, ``{"__tuple__": [...]}``, ``{"__float__": "inf"}``
(also ``"-inf"``, ``"nan"``), ``{"__dict__": [[key, value], ...]}`` (for dicts with
keys that are not strings, or strings starting with ``__``). Other dicts are plain
JSON objects.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from flowdl._checkpoint.errors import CheckpointError

_MARKERS = ("__tensor__", "__tuple__", "__float__", "__dict__")


def encode(value: Any, where: str, tensors: dict[str, Tensor] | None, prefix: str = "") -> Any:
    """`value` as a JSON value; tensors go into `tensors` under ``prefix + path``.

    Args:
        value: the state to encode.
        where: how to name `value` in an error (``"extra"``, ``"optimizer state"``).
        tensors: where tensors go, or ``None`` to refuse tensors.
        prefix: the start of every tensor's name.

    Raises:
        CheckpointError: something in `value` cannot be stored; the message names it.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return float(value)
        return {"__float__": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
    if isinstance(value, Tensor):
        return _encode_tensor(value, where, tensors, prefix)
    if isinstance(value, (list, tuple)):
        items = [
            encode(item, f"{where}[{i}]", tensors, f"{prefix}/{i}") for i, item in enumerate(value)
        ]
        return items if isinstance(value, list) else {"__tuple__": items}
    if isinstance(value, dict):
        return _encode_dict(value, where, tensors, prefix)
    raise CheckpointError(
        f"{where} is a {_type_of(value)}, which a checkpoint cannot store",
        expected="data only: dicts, lists, tuples, numbers, strings, None"
        + (", tensors" if tensors is not None else ""),
        received=f"{where} = {_short_repr(value)}",
        fix=_fix_for(value, tensors is not None),
    )


def _encode_tensor(value: Tensor, where: str, tensors: dict[str, Tensor] | None, name: str) -> Any:
    if tensors is None:
        raise CheckpointError(
            f"{where} is a tensor; extras are stored as JSON",
            expected="numbers, strings, lists, dicts, tuples, None",
            received=f"{where} = Tensor{list(value.shape)} {value.dtype}",
            fix="pass a number (tensor.item()) or a list (tensor.tolist()); a tensor that is "
            "part of the model belongs in a buffer (module.register_buffer)",
        )
    if value.layout != torch.strided:
        raise CheckpointError(
            f"{where} is a {value.layout} tensor; checkpoints store dense tensors only",
            received=f"{where}: layout {value.layout}",
            fix="convert it with .to_dense() before saving",
        )
    key = name
    while key in tensors:
        key += "#"
    tensors[key] = value.detach()
    return {"__tensor__": key}


def _encode_dict(
    value: dict[Any, Any], where: str, tensors: dict[str, Tensor] | None, prefix: str
) -> Any:
    plain = all(isinstance(k, str) and not k.startswith("__") for k in value)
    if plain:
        return {
            str(k): encode(v, f"{where}[{k!r}]", tensors, f"{prefix}/{k}") for k, v in value.items()
        }
    pairs = []
    for k, v in value.items():
        if isinstance(k, (Tensor, list, dict)):
            raise CheckpointError(
                f"{where} has a key of type {_type_of(k)}",
                expected="dict keys that are strings, numbers, None or tuples of those",
                received=f"key {_short_repr(k)}",
                fix="use string or integer keys",
            )
        item = encode(v, f"{where}[{k!r}]", tensors, f"{prefix}/{k}")
        pairs.append([encode(k, f"{where} key", None), item])
    return {"__dict__": pairs}


def decode(value: Any, tensors: Mapping[str, Tensor]) -> Any:
    """The state `encode` stored: `value` with its markers resolved from `tensors`.

    Raises:
        KeyError: a tensor reference names no stored tensor (the caller reports it).
        ValueError: a marker is malformed.
    """
    if isinstance(value, list):
        return [decode(item, tensors) for item in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((marker, inner),) = value.items()
        if marker == "__tensor__":
            return tensors[inner]
        if marker == "__tuple__":
            return tuple(decode(item, tensors) for item in inner)
        if marker == "__float__":
            return float(inner)
        if marker == "__dict__":
            return {_hashable(decode(k, tensors)): decode(v, tensors) for k, v in inner}
    return {k: decode(v, tensors) for k, v in value.items()}


def tensor_names(value: Any) -> list[str]:
    """Every tensor name an encoded value refers to, in order."""
    if isinstance(value, list):
        return [name for item in value for name in tensor_names(item)]
    if not isinstance(value, dict):
        return []
    if len(value) == 1 and "__tensor__" in value:
        return [value["__tensor__"]]
    return [name for item in value.values() for name in tensor_names(item)]


def _hashable(key: Any) -> Any:
    if isinstance(key, list):
        raise ValueError("a dict key decodes to a list")
    return key


def _type_of(value: Any) -> str:
    kind = type(value)
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _fix_for(value: Any, tensors_allowed: bool) -> str:
    if callable(value):
        return (
            "functions and methods are code, and a checkpoint stores data only: recreate it "
            "when resuming (e.g. pass the same lr_lambda to LambdaLR), and keep out of the "
            "saved state anything that is not data"
        )
    if hasattr(value, "item") and hasattr(value, "dtype"):
        return "convert it to a Python number with .item() (or a list with .tolist())"
    return "store its data instead (numbers, strings, lists, dicts), and rebuild the object from it"
