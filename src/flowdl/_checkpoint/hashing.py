"""The structural hash: a SHA-256 naming what a model computes, not its values.

Two models with the same hash have the same state-dict keys, shapes and wiring, and
every builder argument that changes what a graph computes is the same in both (a
loop's mode and count, a router's `k`, a map's options, a tag's declared initial
value, how references are wired and passed), so a checkpoint of one fits the other
and computes the same thing. Values, dtypes and devices are not part of it
(``model.double()`` or ``model.cuda()`` keeps the hash), and neither are a graph's
label and tag names (unless a module receives its references by name).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import sys
from typing import Any

from torch import Tensor, nn

from flowdl._control.base import ControlNode
from flowdl._control.gate import Gate
from flowdl._control.loop import Loop
from flowdl._control.map import Map
from flowdl._control.switch import Switch
from flowdl._executor.core import GraphCore
from flowdl._ir.contracts import uses_forward_named
from flowdl._ir.nodes import NodeKind
from flowdl._ir.record import FlowRecord, StateInit

SCHEME = "flowdl.structure/2"
"""The version of what the hash covers; part of every hash.

2: the configuration of constructs and built-in modules, plain callables by their
qualified names, declared initial values, input names, references passed by name.
"""

CONSTRUCT_FIELDS: dict[type[ControlNode], tuple[str, ...]] = {
    Loop: ("mode", "max_iter"),
    Map: ("mode", "n_slices", "batched"),
    Gate: (),
    Switch: (),
}
"""What each construct computes with besides its inner callables (which are hashed
too, in order): a loop's mode and count, a map's mode, slices and batching. A gate's
and a switch's arity is the number of their inner callables."""

_CONFIGURED = ("torch.nn.modules.", "flowdl.")
"""Where a module's ``extra_repr`` is its configuration: PyTorch's layers (a
convolution's stride, a dropout's probability) and flowdl's built-ins (a router's
`k`, a halt's threshold, a merge's dimension). A user's own ``extra_repr`` may print
values, so it is left out; `_UNCONFIGURED` lists PyTorch's that print dtypes."""

_UNCONFIGURED = ("torch.nn.modules.container.",)


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


def _unsharded_type(module: nn.Module) -> type:
    """The module's class, or the class FSDP2's `fully_shard` derived its own from
    (``FSDPLinear`` from ``Linear``): sharding does not change what a model computes."""
    cls = type(module)
    fsdp = sys.modules.get("torch.distributed.fsdp")  # nothing is sharded before its import
    managed = getattr(fsdp, "FSDPModule", None)
    if isinstance(managed, type) and cls.__bases__[:1] == (managed,) and len(cls.__bases__) == 2:
        return cls.__bases__[1]
    return cls


def structural_hash(model: nn.Module) -> str:
    """The SHA-256 (64 hex digits) of a model's structure.

    For an `fl.Graph`: its nodes in order (kind; for nodes with a module, the node
    id, which names the module in the state dict, and the module's structure, or
    the earlier node it shares the module with; for a plain callable, its qualified
    name), its edges (each node's inputs, forward-reference state from writer to
    reader with the tag's declared initial value, the output), its input names in
    call order, which references are shared by every sample, the tag names a module
    receives its references by (``forward_named``), its own parameters and buffers,
    and the hashes of nested modules and graphs. The label and tag names are not
    included. For any other `nn.Module`: its type name, its configuration (the
    ``extra_repr()`` of PyTorch's and flowdl's modules: a convolution's stride, a
    dropout's probability, `fl.TopKRouter`'s `k`; for a loop, gate, switch or map,
    its mode, count or options and its inner modules and callables in order), the
    names and shapes of its parameters and persistent buffers, and the structure of
    its children, by name, recursively (a nested `fl.Graph` by its graph hash).

    A plain callable (a function, a lambda, a method) is known by its qualified
    name (``torch.tanh``: ``_VariableFunctionsClass.tanh``; a lambda by the function
    it is written in), with the arguments of a `functools.partial`; two lambdas
    written in the same function are not told apart. A module of your own is known
    by its type, tensors and children: hyperparameters it keeps in plain attributes
    are not read.

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
        >>> loop = lambda n: fl.Flow(nn.Linear(2, 2)).loop(nn.Tanh()).for_(n).build()
        >>> fl.structural_hash(loop(2)) == fl.structural_hash(loop(3))  # so do counts
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
            "type": _unsharded_type(module).__qualname__,
            "config": self._config(module),
            **_own_tensors(module),
            "children": [
                [name, self.digest(child)]
                for name, child in module._modules.items()
                if child is not None
            ],
        }

    def _config(self, module: nn.Module) -> Any:
        """What the module computes with besides its tensors and children."""
        if isinstance(module, ControlNode):
            return self._construct(module)
        extra_repr = type(module).extra_repr
        where = f"{getattr(extra_repr, '__module__', '')}."
        if where.startswith(_CONFIGURED) and not where.startswith(_UNCONFIGURED):
            return module.extra_repr()
        return None

    def _construct(self, node: ControlNode) -> dict[str, Any]:
        """A construct's options and its inner callables in order (modules by digest)."""
        fields = CONSTRUCT_FIELDS.get(type(node))
        if fields is None:  # a construct without an entry: its public plain settings
            options = {
                k: _plain(v)
                for k, v in sorted(vars(node).items())
                if not k.startswith("_") and k != "training" and _is_setting(v)
            }
        else:
            options = {k: _plain(getattr(node, k)) for k in fields}
        inner = [[role, self._callable(fn)] for role, fn in node.inner()]
        return {"construct": type(node).__qualname__, **options, "inner": inner}

    def _callable(self, fn: Any) -> Any:
        """A module by its digest, anything else callable by `callable_identity`."""
        if isinstance(fn, nn.Module):
            return {"module": self.digest(fn)}
        return callable_identity(fn)

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
                entry["callable"] = callable_identity(module)
            if uses_forward_named(node):  # the module receives its references by tag name
                entry["ref_names"] = list(node.ref_names)
            nodes.append(entry)
        state = sorted(
            [node.index, record.state_writers[node.state_tag]]
            for node in record.nodes
            if node.kind is NodeKind.STATE_READ and node.state_tag is not None
        )
        inits = [
            [node.index, self._init(record.state_inits.get(node.state_tag))]
            for node in record.nodes
            if node.kind is NodeKind.STATE_READ and node.state_tag is not None
        ]
        return {
            "graph": nodes,
            "inputs": list(record.inputs),
            "input_names": [record.nodes[i].input_name for i in record.inputs],
            "output": record.output,
            "state": state,
            "state_inits": sorted(inits),
            **_sharing(record),
            **_own_tensors(graph),
        }

    def _init(self, init: StateInit | None) -> Any:
        """A declared first-call value: a tensor by its shape, a per-sample shape, a callable."""
        if init is None:
            return None
        if isinstance(init, Tensor):
            kind = "parameter" if isinstance(init, nn.Parameter) else "tensor"
            return {kind: list(init.shape)}
        if isinstance(init, tuple):
            return {"per_sample_shape": list(init)}
        return {"callable": self._callable(init)}


def _sharing(record: FlowRecord) -> dict[str, list[int]]:
    """Which inputs are per-sample and which tagged values are shared, by node index."""
    per_sample = record.per_sample_inputs
    return {
        "per_sample_inputs": sorted(
            i for i in record.inputs if record.nodes[i].input_name in per_sample
        ),
        "shared": sorted({record.tags[tag] for tag in record.shared_tags if tag in record.tags}),
    }


def callable_identity(fn: Any) -> Any:
    """How the hash knows a plain callable: its qualified name (``relu``,
    ``Model.step``, ``make.<locals>.<lambda>``), a `functools.partial` with its
    arguments, a callable object by its type."""
    if isinstance(fn, functools.partial):
        return {
            "partial": callable_identity(fn.func),
            "args": [_plain(a) for a in fn.args],
            "keywords": {k: _plain(v) for k, v in sorted(fn.keywords.items())},
        }
    if inspect.ismethod(fn):
        return {"method": _qualified_name(fn.__func__)}
    name = _qualified_name(fn)
    if name is not None:
        return {"function": name}
    return {"object": type(fn).__qualname__}


def _qualified_name(fn: Any) -> str | None:
    """``__qualname__`` (or ``__name__``) of a function, builtin or class; ``None`` for
    an instance (which has neither)."""
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    return name if isinstance(name, str) else None


def _is_setting(value: Any) -> bool:
    """A plain setting: a number, string, bool or ``None``, or a tuple of them."""
    if isinstance(value, tuple):
        return all(_is_setting(v) for v in value)
    return value is None or isinstance(value, (bool, int, float, str))


def _plain(value: Any) -> Any:
    """`value` as JSON: settings as they are, tensors by shape, callables by identity."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, Tensor):
        return {"tensor": list(value.shape)}
    if isinstance(value, nn.Module):
        return {"module": type(value).__qualname__}
    if callable(value):
        return callable_identity(value)
    return {"object": type(value).__qualname__}


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
