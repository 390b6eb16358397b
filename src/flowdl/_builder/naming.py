"""Naming points of the graph: `tag`, `tag_group`, `input`, `label`."""

from __future__ import annotations

from typing import Any, TypeVar

import torch

from flowdl._builder.arguments import check_flag, check_name
from flowdl._builder.core import UNSET, FlowCore, builder_call
from flowdl._errors import BuildError
from flowdl._ir.nodes import BuilderCall, NodeKind
from flowdl._ir.record import StateInit

N = TypeVar("N", bound="NamingMixin")


class NamingMixin(FlowCore):
    """The builder calls that name things."""

    @builder_call
    def tag(self: N, name: str, *, init: StateInit = UNSET, shared: bool = False) -> N:
        """Name the current point of the stream (or the side output of a `fork`).

        A tag is an observation tap (`Graph.tagged`) and a reference target for
        `using`. A `using` *before* the tag reads the value of the previous call:
        the tag then carries state across calls.

        Args:
            name: the tag; unique in this graph, without dots or spaces.
            init: for a tag read before it is defined (state), the value of the
                first call (and of the first call after ``reset_state()``): a tensor
                (used as it is; an `nn.Parameter` is registered and learned), a
                per-sample shape such as ``(64,)`` (zeros shaped ``[batch, 64]`` in
                the dtype and device of the consumer's stream), or a callable
                ``init(stream) -> Tensor``. Without it, the reading module's
                ``initial_state(ref, stream)`` decides if it has one; otherwise the
                first call reads zeros shaped like the consumer's stream.
            shared: the value is the same for every sample, though computed from the
                stream (a batch statistic, a codebook a module returns): a per-sample
                halting loop reading it passes it whole instead of cutting its rows
                (see docs/guarantees.md, "Per-sample halting").

        Returns:
            a new flow; the flow it is called on is unchanged.

        Raises:
            BuildError: a name already used, not a valid name, or open branches
                (use `tag_group`).

        Example:
            >>> import torch, flowdl as fl
            >>> g = fl.Flow(torch.nn.Identity()).tag("x").through(torch.tanh).build()
            >>> y = g(torch.zeros(2))
            >>> g.tagged("x")
            tensor([0., 0.])
        """
        call = self._next_call("tag", (name,), init=init, shared=shared or UNSET)
        check_name(name, "tag", call)
        check_flag(shared, "shared", call)
        if self._pending_fork is not None:
            node = self._pending_fork
        elif len(self._streams) != 1:
            raise BuildError(
                f".tag() needs a single stream, got {len(self._streams)} open branches from "
                ".split()",
                call=str(call),
                expected="one stream to name",
                received=f"{len(self._streams)} branches opened by {self._split_call}",
                fix=f".tag_group({name!r}) names every branch ({name}_0, {name}_1, ...); "
                "or .merge(...) first and tag the result",
            )
        else:
            node = self._streams[0]
        self._check_new_tag(name, call)
        state_init = self._check_init(name, init, call) if init is not UNSET else None
        self._calls.append(call)
        self._pending_fork = None
        self._define_tag(name, node)
        if state_init is not None:
            self._state_inits[name] = state_init
        if shared:
            self._shared_tags.add(name)
        return self

    @builder_call
    def tag_group(self: N, name: str) -> N:
        """After `split`, tag every branch: ``name_0``, ``name_1``, ...; the group is ``name``.

        Args:
            name: the group's name; its members are ``name_0``, ``name_1``, ....

        Returns:
            a new flow; the flow it is called on is unchanged.

        Raises:
            BuildError: a single stream (use `tag`), or a name already used.

        Example:
            >>> import torch, flowdl as fl
            >>> g = (fl.Flow(torch.nn.Identity())
            ...        .split(torch.sin, torch.cos).tag_group("head").merge(fl.Add())
            ...        .build())
            >>> g.tag_groups
            {'head': ('head_0', 'head_1')}
        """
        call = self._begin("tag_group", (name,))
        check_name(name, "tag group", call)
        n = len(self._streams)
        if n < 2:
            raise BuildError(
                f".tag_group({name!r}) needs several branches, got a single stream",
                call=str(call),
                expected="two or more open branches from .split(...)",
                received="one stream",
                fix=f"use .tag({name!r}) to name a single stream",
            )
        if name in self._groups:
            raise BuildError(
                f"duplicate tag group name {name!r}",
                call=str(call),
                expected="a group name not used before in this graph",
                received=repr(name),
                fix="pick another name",
            )
        if name in self._tags:
            raise BuildError(
                f".tag_group({name!r}) conflicts with the existing tag {name!r}",
                call=str(call),
                expected="a group name that is not already a tag",
                received=repr(name),
                fix="pick another group name",
            )
        members = [f"{name}_{i}" for i in range(n)]
        for member in members:
            self._check_new_tag(member, call, group=name)
        self._calls.append(call)
        for member, node in zip(members, self._streams, strict=True):
            self._define_tag(member, node)
        self._groups[name] = members
        return self

    @builder_call
    def input(self: N, *names: str, per_sample: bool = False) -> N:
        """Declare auxiliary graph inputs, read with ``.using(name)``.

        The graph is then called ``g(x, *aux)`` with the auxiliary inputs in
        declaration order, or by name: ``g(x, mask=m)``. Each name is also a tag.
        The main stream is unchanged.

        Args:
            *names: the inputs' names.
            per_sample: whether the rows of these inputs are the samples of ``x`` (a
                mask, per-sample features). By default an auxiliary input is shared
                by every sample (a memory, a codebook): a per-sample halting loop
                passes it whole, and cuts the rows of per-sample ones to its active
                samples (see docs/guarantees.md, "Per-sample halting").

        Returns:
            a new flow; the flow it is called on is unchanged.

        Raises:
            BuildError: no name, or a name already used.

        Example:
            >>> import torch, flowdl as fl
            >>> g = (fl.Flow(torch.nn.Identity()).input("bias")
            ...        .through(fl.Add()).using("bias")
            ...        .build())
            >>> g(torch.tensor([1.0, 2.0]), torch.tensor([10.0, 20.0]))
            tensor([11., 22.])
        """
        call = self._begin("input", names, per_sample=per_sample or UNSET)
        check_flag(per_sample, "per_sample", call)
        if not names:
            raise BuildError(
                ".input() needs at least one name",
                call=str(call),
                expected="one or more input names",
                received="no names",
                fix=".input('mask') declares a second graph input, read with .using('mask')",
            )
        for i, name in enumerate(names):
            check_name(name, "input", call)
            self._check_new_tag(name, call)
            if name in names[:i]:
                raise BuildError(
                    f"duplicate input name {name!r}",
                    call=str(call),
                    expected="distinct input names",
                    received=repr(names),
                    fix="name each input once; one input can feed several nodes through "
                    ".using(name)",
                )
        self._calls.append(call)
        for name in names:
            node = self._add_node(
                NodeKind.INPUT,
                f"input_{name}",
                call,
                unique=True,
                inputs=[],
                n_stream=0,
                input_name=name,
            )
            self._inputs.append(node)
            self._define_tag(name, node)
            if per_sample:
                self._per_sample_inputs.add(name)
        return self

    @builder_call
    def label(self: N, name: str) -> N:
        """Name this graph; nested graphs are then addressable by dotted paths.

        Args:
            name: the label, without dots or spaces.

        Returns:
            a new flow; the flow it is called on is unchanged.

        Raises:
            BuildError: the graph is already labelled, or the name is not valid.

        Example:
            >>> import torch, flowdl as fl
            >>> fl.Flow(torch.nn.Identity()).label("encoder").build().label
            'encoder'
        """
        call = self._next_call("label", (name,))
        check_name(name, "label", call)
        if self._label is not None:
            raise BuildError(
                f"this graph is already labelled {self._label!r}",
                call=str(call),
                expected="one .label() per graph",
                received=f"a second label {name!r}",
                fix="keep a single .label(...) call",
            )
        self._calls.append(call)
        self._label = name
        return self

    def _check_new_tag(self, name: str, call: BuilderCall, group: str | None = None) -> None:
        what = f"suffixed name {name!r} of .tag_group({group!r})" if group else f"tag {name!r}"
        if name in self._tags:
            node = self._nodes[self._tags[name]]
            raise BuildError(
                f"duplicate tag name {name!r}",
                call=str(call),
                expected="a tag name not used before in this graph",
                received=f"{what}, already naming {node.id} (from {node.call})",
                fix="pick another name; each tag names exactly one point of the graph",
            )
        if name in self._groups:
            raise BuildError(
                f"{what} conflicts with the tag group {name!r}",
                call=str(call),
                expected="a tag name that is not already a tag group",
                received=repr(name),
                fix="pick another name",
            )

    def _check_init(self, name: str, init: Any, call: BuilderCall) -> StateInit:
        if name not in self._pending_refs:
            raise BuildError(
                f".tag({name!r}, init=...) sets the first-call value of state, but no earlier "
                f".using({name!r}) reads {name!r} as state",
                call=str(call),
                expected=f"init= only on a tag read before it is defined (a forward reference: "
                f".using({name!r}) earlier in the chain)",
                received=f"init={init!r}",
                fix="drop init=, or move the .using(...) that should read the previous call's "
                "value before this tag",
            )
        if isinstance(init, torch.Tensor) or callable(init):
            return init  # type: ignore[no-any-return]
        if isinstance(init, (tuple, list, torch.Size)) and all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in init
        ):
            return tuple(init)
        raise BuildError(
            f".tag({name!r}, init=...) needs a per-sample shape or a callable",
            call=str(call),
            expected="a tensor (the value itself; an nn.Parameter is learned), a tuple of "
            "non-negative ints such as (64,) (zeros shaped [batch, 64]), or a callable "
            "init(stream) -> Tensor",
            received=f"{type(init).__name__} {init!r}",
            fix="init=(64,) for zeros of 64 features per sample",
        )

    def _define_tag(self, name: str, node: int) -> None:
        self._tags[name] = node
        self._own(node).tags.append(name)
        if name in self._pending_refs:
            del self._pending_refs[name]
            self._state_writers[name] = node
