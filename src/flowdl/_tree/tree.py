"""The tree, a feature of `fl.Graph`: the methods that follow dotted paths (``"encoder.scan"``).

A path (see `flowdl._tree.paths`) names a nested labelled graph, a tag (the module
of the node it names: for a residual ``.also(m)``, the module ``m``), or a tag group
(every member). Nothing here runs during a forward.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar, TypeVar, cast

from torch import Tensor, nn

from flowdl._checkpoint.load import load_into
from flowdl._checkpoint.report import LoadReport
from flowdl._executor.core import GraphCore
from flowdl._ir.nodes import NodeKind
from flowdl._tree.children import TREE_CACHE, children
from flowdl._tree.paths import PathError, PathKind, Target, describe_level, resolve

__all__ = ["Tree"]

T = TypeVar("T", bound="Tree")
"""A graph with the tree feature: the graphs nested in one are of its class (`fl.Graph`)."""


class Tree(GraphCore):
    """Paths, nested graphs, parameters by path, freezing and training modes.

    A feature of `fl.Graph`. The labelled graphs nested in a graph are found once
    per plan and cached (`flowdl._tree.children.nested_labelled`).
    """

    _transient: ClassVar[tuple[str, ...]] = (TREE_CACHE,)

    def validate_path(self, path: str) -> PathKind:
        """What `path` names in the graph tree.

        Args:
            path: labels of nested graphs and a last name, joined by dots:
                ``"encoder"``, ``"encoder.hidden"``, ``"encoder.scan.state"``.

        Returns:
            `fl.PathKind.SUBGRAPH`, ``TAG``, ``TAG_GROUP`` or ``METRIC``.

        Raises:
            KeyError: a segment names nothing at its level (the message lists what
                exists there), or names something internal (``_``-prefixed) of a
                nested graph. The error is a `KeyError` subclass, ``PathError``.
            ValueError: `path` is malformed (an empty segment, spaces).

        Example:
            >>> import torch, flowdl as fl
            >>> from torch import nn
            >>> scan = fl.Flow(nn.Linear(4, 4)).tag("hidden").label("scan").build()
            >>> encoder = fl.Flow(nn.Linear(4, 4)).loop(scan).for_(2).label("encoder").build()
            >>> g = fl.Flow(encoder).through(nn.Linear(4, 1)).tag("out").build()
            >>> g.validate_path("encoder.scan.hidden"), g.validate_path("out")
            (<PathKind.TAG: 'tag'>, <PathKind.TAG: 'tag'>)
            >>> g.validate_path("encoder.scan")
            <PathKind.SUBGRAPH: 'subgraph'>
            >>> g.validate_path("encoder.decoder")
            Traceback (most recent call last):
            ...
            flowdl._tree.paths.PathError: g.validate_path(): no 'decoder' in Graph 'encoder'
              path:   'encoder.decoder'
              exists: Graph 'encoder' has nested graphs: scan
              fix:    check the spelling; a metric exists once it was recorded or collected
        """
        return resolve(self, path, "g.validate_path()").kind

    def subgraph(self: T, path: str) -> T:
        """The labelled graph at `path` (the very object nested in this graph).

        Args:
            path: a label, or a dotted path of labels (``"encoder.scan"``).

        Returns:
            the nested `Graph`.

        Raises:
            KeyError: `path` names nothing, or a tag rather than a graph.

        Example:
            >>> import torch, flowdl as fl
            >>> encoder = fl.Flow(torch.nn.Linear(2, 2)).label("encoder").build()
            >>> g = fl.Flow(encoder).through(torch.nn.ReLU()).build()
            >>> g.subgraph("encoder") is encoder
            True
        """
        return cast(T, _subgraph_at(self, path, "g.subgraph()"))

    def subgraphs(self: T) -> dict[str, T]:
        """The labelled graphs nested directly in this graph, by label, in order.

        Found among the node modules, inside loops, gates, switches and maps, and
        inside plain modules; not inside other graphs (those are their children).

        Returns:
            ``{label: graph}``.

        Example:
            >>> import torch, flowdl as fl
            >>> a = fl.Flow(torch.nn.Tanh()).label("a").build()
            >>> b = fl.Flow(torch.nn.ReLU()).label("b").build()
            >>> g = fl.Flow(a).gate(fl.SoftmaxRouter(3, 2), b, torch.nn.Identity()).build()
            >>> list(g.subgraphs())
            ['a', 'b']
        """
        return cast(dict[str, T], children(self))

    def load_subgraph_checkpoint(
        self, path_in_tree: str, file: str | os.PathLike[str], strict: bool = True
    ) -> LoadReport:
        """Load a checkpoint of a nested graph into that graph; the rest is left alone.

        The checkpoint is one saved from the nested graph itself
        (``fl.save_checkpoint(file, g.subgraph("encoder"))``), or from a graph built
        the same way and trained on its own. It is checked against the nested
        graph's own structural hash, and its tensors are named in the nested
        graph's own namespace (``Linear_0.weight``, not ``encoder.Linear_0.weight``).
        Only the nested graph's parameters and buffers change; everything else in
        this graph is left bit for bit as it was, and a refused load changes
        nothing at all. This is ``fl.load_checkpoint(file, g.subgraph(path_in_tree),
        strict=strict)``, with messages naming the nested graph. A tensor the nested
        graph shares with the rest of the model is one tensor: it changes everywhere.

        Args:
            path_in_tree: the dotted label path of the nested graph (``"encoder"``,
                ``"encoder.scan"``).
            file: a checkpoint written by `fl.save_checkpoint`.
            strict: as for `fl.load_checkpoint`: ``True`` loads everything or
                nothing; ``False`` loads the tensors whose names and shapes match
                and reports the rest.

        Returns:
            the `fl.LoadReport`, its names in the nested graph's namespace.

        Raises:
            KeyError: `path_in_tree` names nothing, or a tag rather than a nested
                graph (a ``PathError`` listing what exists).
            CheckpointError: the file is missing, damaged or not a flowdl
                checkpoint, or (``strict``) it was saved from another model.

        Example:
            >>> import tempfile, torch, flowdl as fl
            >>> from torch import nn
            >>> def make_encoder():
            ...     return fl.Flow(nn.Linear(4, 4)).through(nn.Tanh()).label("encoder").build()
            >>> pretrained = make_encoder()
            >>> file = tempfile.mkdtemp() + "/encoder.safetensors"
            >>> fl.save_checkpoint(file, pretrained)
            >>> g = fl.Flow(make_encoder()).through(nn.Linear(4, 2)).build()
            >>> g.load_subgraph_checkpoint("encoder", file).loaded
            ('Linear_0.weight', 'Linear_0.bias')
            >>> torch.equal(g.subgraph("encoder").Linear_0.weight, pretrained.Linear_0.weight)
            True
        """
        child = _subgraph_at(self, path_in_tree, "g.load_subgraph_checkpoint()")
        return load_into(file, child, None, None, strict, f"the nested graph at {path_in_tree!r}")

    # ------------------------------------------------------------ parameters

    def named_parameters_at(self, path: str) -> list[tuple[str, nn.Parameter]]:
        """``(name, parameter)`` under `path`, named in the target's own namespace.

        For a nested graph, the names its own ``named_parameters()`` gives (so a
        subgraph's parameters load into the same graph built alone); for a tag, the
        names of the tagged node's module; for a tag group, those prefixed with the
        member tag (``head_0.weight``). Shared parameters are listed once.

        Args:
            path: a tag, tag group, label or dotted path.

        Returns:
            the named parameters, in order.

        Raises:
            KeyError: `path` names nothing, or a metric.

        Example:
            >>> import torch, flowdl as fl
            >>> encoder = fl.Flow(torch.nn.Linear(2, 2)).label("encoder").build()
            >>> g = fl.Flow(encoder).through(torch.nn.Linear(2, 1)).tag("head").build()
            >>> [name for name, _ in g.named_parameters_at("encoder")]
            ['Linear_0.weight', 'Linear_0.bias']
            >>> [name for name, _ in g.named_parameters_at("head")]
            ['weight', 'bias']
        """
        named = _named_tensors(self, path, "g.named_parameters_at()", buffers=False)
        return cast(list[tuple[str, nn.Parameter]], named)

    def parameters_at(self, path: str) -> list[nn.Parameter]:
        """The parameters under `path` (see `named_parameters_at`), each once, in order.

        Args:
            path: a tag, tag group, label or dotted path.

        Returns:
            the parameters.

        Raises:
            KeyError: `path` names nothing, or a metric.

        Example:
            >>> import torch, flowdl as fl
            >>> g = fl.Flow(torch.nn.Linear(3, 2)).tag("proj").through(torch.relu).build()
            >>> [tuple(p.shape) for p in g.parameters_at("proj")]
            [(2, 3), (2,)]
        """
        named = _named_tensors(self, path, "g.parameters_at()", buffers=False)
        return [cast(nn.Parameter, p) for _, p in named]

    def named_buffers_at(self, path: str) -> list[tuple[str, Tensor]]:
        """``(name, buffer)`` under `path` (running statistics...), named as
        `named_parameters_at` names parameters.

        Args:
            path: a tag, tag group, label or dotted path.

        Returns:
            the named buffers, in order.

        Raises:
            KeyError: `path` names nothing, or a metric.

        Example:
            >>> import torch, flowdl as fl
            >>> g = fl.Flow(torch.nn.BatchNorm1d(3)).tag("norm").build()
            >>> [name for name, _ in g.named_buffers_at("norm")]
            ['running_mean', 'running_var', 'num_batches_tracked']
        """
        return _named_tensors(self, path, "g.named_buffers_at()", buffers=True)

    # --------------------------------------------------------------- freezing

    def freeze(self, *paths: str) -> None:
        """Stop training the parameters under `paths`: ``requires_grad = False``.

        Their gradients are cleared too, so an optimizer holding them skips them:
        they stay bit-identical through ``optimizer.step()`` (momentum and weight
        decay included), whatever ``zero_grad`` does. Freeze before wrapping the
        model in ``DistributedDataParallel``, which fixes its parameters when built.

        Args:
            *paths: tags, tag groups, labels or dotted paths.

        Raises:
            TypeError: no path given.
            KeyError: a path names nothing, or a metric.
            ValueError: a path has no parameters.

        Example:
            >>> import torch, flowdl as fl
            >>> encoder = fl.Flow(torch.nn.Linear(2, 2)).label("encoder").build()
            >>> g = fl.Flow(encoder).through(torch.nn.Linear(2, 1)).build()
            >>> g.freeze("encoder")
            >>> g.is_frozen("encoder"), sum(p.requires_grad for p in g.parameters())
            (True, 2)
            >>> g.thaw("encoder"); g.is_frozen("encoder")
            False
        """
        for parameter in _parameters_of(self, paths, "g.freeze()"):
            parameter.requires_grad_(False)
            parameter.grad = None

    def thaw(self, *paths: str) -> None:
        """Train the parameters under `paths` again: ``requires_grad = True``.

        Args:
            *paths: tags, tag groups, labels or dotted paths.

        Raises:
            TypeError: no path given.
            KeyError: a path names nothing, or a metric.
            ValueError: a path has no parameters.
        """
        for parameter in _parameters_of(self, paths, "g.thaw()"):
            parameter.requires_grad_(True)

    def is_frozen(self, path: str) -> bool:
        """Whether every parameter under `path` is frozen (``requires_grad`` is False).

        Args:
            path: a tag, tag group, label or dotted path.

        Returns:
            ``True`` when none of its parameters trains.

        Raises:
            KeyError: `path` names nothing, or a metric.
            ValueError: `path` has no parameters.
        """
        return not any(p.requires_grad for p in _parameters_of(self, (path,), "g.is_frozen()"))

    def set_training_at(self, path: str, mode: bool = True) -> None:
        """``train(mode)`` on the modules under `path` only (``eval()`` for ``mode=False``).

        For a frozen part whose batch norms should keep their statistics, say. A
        later ``g.train()`` or ``g.eval()`` sets every module again.

        Args:
            path: a tag, tag group, label or dotted path.
            mode: ``True`` for training mode, ``False`` for evaluation.

        Raises:
            KeyError: `path` names nothing, or a metric.
            ValueError: no module under `path` (a tag of a plain function, say).

        Example:
            >>> import torch, flowdl as fl
            >>> norm = fl.Flow(torch.nn.BatchNorm1d(3)).label("norm").build()
            >>> g = fl.Flow(torch.nn.Linear(3, 3)).through(norm).build()
            >>> g.set_training_at("norm", False)
            >>> g.training, norm.training, norm.get_submodule("BatchNorm1d_0").training
            (True, False, False)
        """
        target = resolve(self, path, "g.set_training_at()")
        modules = [m for _, m in _modules_at(target, path, "g.set_training_at()")]
        trainable = [m for m in modules if isinstance(m, nn.Module)]
        if not trainable:
            raise ValueError(
                f"g.set_training_at({path!r}): no module there (the node applies "
                f"{', '.join(type(m).__name__ for m in modules) or 'nothing'}), so there is "
                "no training mode to set"
            )
        for module in trainable:
            module.train(bool(mode))


def _subgraph_at(graph: GraphCore, path: str, call: str) -> GraphCore:
    """The labelled graph at `path`.

    Raises:
        PathError: `path` names nothing, or something other than a nested graph.
    """
    target = resolve(graph, path, call)
    if target.subgraph is None:
        raise PathError(
            f"{call}: {target.name!r} is a {target.kind.value} of "
            f"{target.graph.short_description()}, not a nested graph",
            path=path,
            exists=describe_level(target.graph, internal=not target.prefix),
            fix="a subgraph path ends at a label; tags are read with g.tagged_at(path)",
        )
    return target.subgraph


def _module_of_tag(graph: GraphCore, tag: str) -> Any:
    """The module of the node `tag` names; for a residual sum, the added module."""
    record = graph._record
    node = record.nodes[record.tags[tag]]
    if node.kind is NodeKind.RESIDUAL:
        return record.nodes[node.inputs[1]].module
    return node.module


def _modules_at(target: Target, path: str, call: str) -> list[tuple[str, Any]]:
    """``(name prefix, module)`` for what `target` names (modules may be plain callables)."""
    if target.subgraph is not None:
        return [("", target.subgraph)]
    if target.kind is PathKind.METRIC:
        raise PathError(
            f"{call}: {target.name!r} is a metric of {target.graph.short_description()}, "
            "not a part of the model",
            path=path,
            exists=describe_level(target.graph, internal=not target.prefix),
            fix="name a nested graph or a tag",
        )
    members = target.members
    if target.kind is PathKind.TAG:
        return [("", _module_of_tag(target.graph, members[0]))]
    return [(f"{m}.", _module_of_tag(target.graph, m)) for m in members]


def _named_tensors(
    graph: GraphCore, path: str, call: str, buffers: bool
) -> list[tuple[str, Tensor]]:
    target = resolve(graph, path, call)
    seen: set[int] = set()
    out: list[tuple[str, Tensor]] = []
    for prefix, module in _modules_at(target, path, call):
        if not isinstance(module, nn.Module):
            continue
        named = module.named_buffers() if buffers else module.named_parameters()
        for name, tensor in named:
            if id(tensor) not in seen:
                seen.add(id(tensor))
                out.append((prefix + name, tensor))
    return out


def _parameters_of(graph: GraphCore, paths: tuple[str, ...], call: str) -> list[nn.Parameter]:
    if not paths:
        raise TypeError(f"{call} needs at least one path, e.g. {call[:-1]}'encoder')")
    seen: set[int] = set()
    out: list[nn.Parameter] = []
    for path in paths:
        found = _named_tensors(graph, path, call, buffers=False)
        if not found:
            raise ValueError(
                f"{call[:-1]}{path!r}): {path!r} has no parameters, so nothing to freeze, "
                "thaw or test there (a tag of an activation or of a plain function, say)"
            )
        for _, parameter in found:
            if id(parameter) not in seen:
                seen.add(id(parameter))
                out.append(cast(nn.Parameter, parameter))
    return out
