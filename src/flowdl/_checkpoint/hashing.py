"""The structural hash: a SHA-256 naming a model's architecture, not its values.

Two models with the same hash have the same state-dict keys, shapes and wiring, so
a checkpoint of one fits the other. Values, dtypes and devices are not part of it
(``model.double()`` or ``model.cuda()`` keeps the hash), and neither are a graph's
label and tag names, nor hyperparameters that hold no tensor (a loop's iteration
count, a dropout probability).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from torch import nn

from flowdl._describe import type_name
from flowdl._executor.core import GraphCore
from flowdl._ir.nodes import NodeKind

SCHEME = "flowdl.structure/1"
"""The version of what the hash covers; part of every hash."""


def unwrap(model: nn.Module) -> nn.Module:
    """The module a wrapper holds: `DistributedDataParallel`'s, `DataParallel`'s or
    `torch.compile`'s; the model itself otherwise (wrappers of wrappers are unwrapped too)."""
    while True:
        inner = getattr(model, "module", None)
        if isinstance(inner, nn.Module) and isinstance(
            model, (nn.parallel.DistributedDataParallel, nn.DataParallel)
        ):
            model = inner
            continue
        original = getattr(model, "_orig_mod", None)  # torch.compile's OptimizedModule
        if isinstance(original, nn.Module):
            model = original
            continue
        return model


def structural_hash(model: nn.Module) -> str:
    """The SHA-256 (64 hex digits) of a model's structure.

    For an `fl.Graph`: its nodes in order (kind; for nodes with a module, the node
    id, which names the module in the state dict, and the module's structure, or
    the earlier node it shares the module with), its edges (each node's inputs,
    forward-reference state from writer to reader, the output), its own parameters
    and buffers, and the hashes of nested modules and graphs. The label, tag names
    and input names are not included. For any other `nn.Module`: its type name, the
    names and shapes of its parameters and persistent buffers, and the structure of
    its children, by name, recursively (a nested `fl.Graph` by its graph hash).

    Values, dtypes and devices are not part of the hash. A wrapped model
    (`DistributedDataParallel`, `DataParallel`, `torch.compile`) has the hash of
    the module it wraps. Every nested graph has its own hash, so a checkpoint of a
    sub-model can be checked against the sub-model (``g.subgraph("encoder")``).

    Args:
        model: any `nn.Module`.

    Returns:
        64 lowercase hexadecimal digits.

    Example:
        >>> import torch, flowdl as fl
        >>> from torch import nn
        >>> a = fl.Flow(nn.Linear(2, 3)).through(nn.ReLU()).label("a").build()
        >>> b = fl.Flow(nn.Linear(2, 3)).through(nn.ReLU()).label("b").build()
        >>> c = fl.Flow(nn.Linear(2, 4)).through(nn.ReLU()).build()
        >>> fl.structural_hash(a) == fl.structural_hash(b)  # labels do not count
        True
        >>> fl.structural_hash(a) == fl.structural_hash(c)  # shapes do
        False
        >>> len(fl.structural_hash(nn.Linear(2, 3)))
        64
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"structural_hash() takes an nn.Module, received {type(model).__name__}")
    return _Hasher().digest(unwrap(model))


class _Hasher:
    """Hashes modules once each (a module shared by several parents is hashed once)."""

    def __init__(self) -> None:
        self._done: dict[int, str] = {}
        self._active: set[int] = set()

    def digest(self, module: nn.Module) -> str:
        key = id(module)
        if key in self._done:
            return self._done[key]
        if key in self._active:
            raise ValueError(
                f"the module tree contains a cycle through {type(module).__name__}; "
                "a module cannot contain itself"
            )
        self._active.add(key)
        try:
            payload = self._graph(module) if isinstance(module, GraphCore) else self._module(module)
        finally:
            self._active.discard(key)
        text = json.dumps([SCHEME, payload], separators=(",", ":"), sort_keys=True)
        self._done[key] = hashlib.sha256(text.encode()).hexdigest()
        return self._done[key]

    def _module(self, module: nn.Module) -> dict[str, Any]:
        return {
            "type": type(module).__qualname__,
            **_own_tensors(module),
            "children": [
                [name, self.digest(child)]
                for name, child in module._modules.items()
                if child is not None
            ],
        }

    def _graph(self, graph: GraphCore) -> dict[str, Any]:
        record = graph._record
        first_use: dict[int, int] = {}
        nodes = []
        for node in record.nodes:
            module = node.module
            entry: dict[str, Any] = {
                "kind": node.kind.value,
                # Inputs and state reads are named after input names and tags: no id.
                "id": node.id if module is not None else None,
                "inputs": list(node.inputs),
                "streams": node.n_stream,
                "like": node.like,
            }
            if isinstance(module, nn.Module):
                if id(module) in first_use:
                    entry["same_module_as"] = first_use[id(module)]
                else:
                    first_use[id(module)] = node.index
                    entry["module"] = self.digest(module)
            elif module is not None:
                entry["callable"] = type_name(module)
            nodes.append(entry)
        state = sorted(
            [node.index, record.state_writers[node.state_tag]]
            for node in record.nodes
            if node.kind is NodeKind.STATE_READ and node.state_tag is not None
        )
        return {
            "graph": nodes,
            "inputs": list(record.inputs),
            "output": record.output,
            "state": state,
            **_own_tensors(graph),
        }


def _own_tensors(module: nn.Module) -> dict[str, list[list[Any]]]:
    """The module's direct parameters and persistent buffers: sorted ``[name, shape]``."""
    skipped = module._non_persistent_buffers_set
    return {
        "parameters": sorted(
            [name, list(p.shape)] for name, p in module._parameters.items() if p is not None
        ),
        "buffers": sorted(
            [name, list(b.shape)]
            for name, b in module._buffers.items()
            if b is not None and name not in skipped
        ),
    }
