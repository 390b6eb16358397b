"""Checking a checkpoint's document, every field's type and range, before anything loads.

`check_document` walks the whole JSON document of a checkpoint (see
`flowdl._checkpoint.save` for its fields) and raises a `CheckpointError` at the
first field that is missing, of the wrong type, out of range, nested too deeply, or
that names a tensor the file does not hold. After it passes, decoding the document
cannot fail, so `load_checkpoint` can check everything first and change things last.
"""

from __future__ import annotations

from typing import Any

from flowdl._checkpoint.container import damaged
from flowdl._checkpoint.layout import MAX_DEPTH

_MARKERS = ("__tensor__", "__tuple__", "__float__", "__dict__")
_FLOATS = ("inf", "-inf", "nan")
_MAX_INT = 2**63


class _Invalid(Exception):
    """A field is not what fl.save_checkpoint writes (message: which and why)."""


def check_document(document: Any, names: set[str], where: str) -> dict[str, Any]:
    """`document` is a checkpoint document whose tensor references are all in `names`.

    Args:
        document: the decoded ``"flowdl.checkpoint"`` JSON value.
        names: the stored tensor names (aliases included).
        where: the file, for the error.

    Returns:
        `document`, now known to be well formed.

    Raises:
        CheckpointError: a field is missing, of the wrong type or out of range.
    """
    try:
        _check(document, names)
    except _Invalid as error:
        raise damaged(
            where, f"its metadata is not what fl.save_checkpoint writes: {error}"
        ) from None
    return dict(document)


def check_encoded(value: Any, names: set[str] | None, what: str) -> None:
    """`value` is what `flowdl._checkpoint.encoding.encode` writes (tensors only in `names`).

    Raises:
        ValueError: it is not; the message names the place.
    """
    try:
        _encoded(value, names, what, 0)
    except _Invalid as error:
        raise ValueError(str(error)) from None


def _check(document: Any, names: set[str]) -> None:
    _require(isinstance(document, dict), "the document is not a JSON object")
    for field in ("flowdl_version", "torch_version", "structural_hash", "model_type"):
        _field(document, field)
        _require(isinstance(document[field], str), f"{field} is not a string")
    _field(document, "epoch")
    epoch = document["epoch"]
    _require(epoch is None or (_is_int(epoch) and abs(epoch) < _MAX_INT),
             "epoch is not an integer or null")  # fmt: skip
    _field(document, "extra")
    _encoded(document["extra"], None, "extra", 0)
    _require(isinstance(document["extra"], dict) and not _is_marker(document["extra"]),
             "extra is not a JSON object")  # fmt: skip
    _model(document, names)
    _field(document, "optimizer")
    optimizer = document["optimizer"]
    if optimizer is not None:
        _component(optimizer, "optimizer", names)
        _parameters(optimizer)
    _field(document, "scheduler")
    if document["scheduler"] is not None:
        _component(document["scheduler"], "scheduler", names)
    aliases = document.get("aliases", {})
    _require(isinstance(aliases, dict), "aliases is not a JSON object")
    for alias, name in aliases.items():
        _require(isinstance(name, str) and name in names and alias in names,
                 f"the alias {alias!r} names no stored tensor")  # fmt: skip
    for part in ("observation", "monitor"):
        if document.get(part) is not None:
            _encoded(document[part], None, part, 0)


def _model(document: dict[str, Any], names: set[str]) -> None:
    _field(document, "model")
    model = document["model"]
    _require(isinstance(model, dict), "model is not a JSON object")
    for field in ("tensors", "objects"):
        _require(field in model, f"model has no {field!r}")
    keys = model["tensors"]
    _require(isinstance(keys, list) and all(isinstance(k, str) for k in keys),
             "model.tensors is not a list of names")  # fmt: skip
    _require(len(set(keys)) == len(keys), "model.tensors names a tensor twice")
    objects = model["objects"]
    _require(isinstance(objects, dict), "model.objects is not a JSON object")
    for key, value in objects.items():
        _encoded(value, names, f"model.objects[{key!r}]", 0)


def _component(value: Any, part: str, names: set[str]) -> None:
    _require(isinstance(value, dict), f"{part} is not a JSON object or null")
    _require(isinstance(value.get("type"), str), f"{part}.type is not a string")
    _require("state" in value, f"{part} has no 'state'")
    _encoded(value["state"], names, f"{part}.state", 0)
    _require(isinstance(value["state"], dict) and not _is_marker(value["state"]),
             f"{part}.state is not a JSON object")  # fmt: skip


def _parameters(optimizer: dict[str, Any]) -> None:
    groups = optimizer.get("parameters")
    if not isinstance(groups, list):
        raise _Invalid("optimizer.parameters is not a list")
    for g, group in enumerate(groups):
        _require(isinstance(group, list), f"optimizer.parameters[{g}] is not a list")
        for i, item in enumerate(group):
            at = f"optimizer.parameters[{g}][{i}]"
            _require(isinstance(item, list) and len(item) == 2, f"{at} is not [name, shape]")
            name, shape = item
            _require(name is None or isinstance(name, str), f"{at}'s name is not a string")
            _require(isinstance(shape, list) and all(_is_int(d) and 0 <= d < _MAX_INT
                     for d in shape), f"{at}'s shape is not a list of sizes")  # fmt: skip


def _encoded(value: Any, names: set[str] | None, what: str, depth: int) -> None:
    """`value` is an encoded value: markers well formed, tensors in `names`."""
    _require(depth <= MAX_DEPTH, f"{what} is nested more than {MAX_DEPTH} levels deep")
    if value is None or isinstance(value, (bool, str, float)):
        return
    if isinstance(value, int):
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            _encoded(item, names, f"{what}[{i}]", depth + 1)
        return
    _require(isinstance(value, dict), f"{what} is not a JSON value")
    if not _is_marker(value):
        for key, item in value.items():
            _encoded(item, names, f"{what}[{key!r}]", depth + 1)
        return
    ((marker, inner),) = value.items()
    if marker == "__tensor__":
        _require(names is not None, f"{what} refers to a tensor where none may be")
        _require(isinstance(inner, str) and inner in (names or ()),
                 f"{what} refers to a tensor the file does not hold")  # fmt: skip
    elif marker == "__tuple__":
        _require(isinstance(inner, list), f"{what} is a malformed tuple")
        _encoded(inner, names, what, depth + 1)
    elif marker == "__float__":
        _require(inner in _FLOATS, f"{what} is a malformed special float")
    else:
        _require(isinstance(inner, list), f"{what} is a malformed dict")
        for i, pair in enumerate(inner):
            _require(isinstance(pair, list) and len(pair) == 2, f"{what} has a malformed item")
            _key(pair[0], f"{what} key {i}", depth + 1)
            _encoded(pair[1], names, f"{what}[{i}]", depth + 1)


def _key(value: Any, what: str, depth: int) -> None:
    """An encoded dict key: it decodes to something hashable."""
    _require(depth <= MAX_DEPTH, f"{what} is nested more than {MAX_DEPTH} levels deep")
    if value is None or isinstance(value, (bool, str, int, float)):
        return
    _require(isinstance(value, dict) and _is_marker(value), f"{what} is not hashable")
    ((marker, inner),) = value.items()
    if marker == "__float__":
        _require(inner in _FLOATS, f"{what} is a malformed special float")
        return
    _require(marker == "__tuple__" and isinstance(inner, list), f"{what} is not hashable")
    for item in inner:
        _key(item, what, depth + 1)


def _is_marker(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in _MARKERS


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _field(document: dict[str, Any], name: str) -> None:
    _require(name in document, f"the field {name!r} is missing")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise _Invalid(message)
