"""`fl.Graph`: a built flow. An `nn.Module` whose forward loops over a precomputed plan."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from flowdl._builder.ir import NodeKind
from flowdl._builder.record import FlowRecord
from flowdl._context import Context, _current
from flowdl._control.loop import Loop
from flowdl._describe import describe_value, plural
from flowdl._draw.graph_methods import DrawingMixin
from flowdl._errors import Cancelled, ControlFlowError, GraphError
from flowdl._executor.fast import FastItem, Segment, run_steps, split_plan
from flowdl._executor.plan import Plan, compile_plan
from flowdl._executor.render import render_chain
from flowdl._executor.state import StateCell, detach, map_tensors
from flowdl._observe.graph_methods import ObservationMixin
from flowdl._observe.state import OBSERVATION_ATTRIBUTES
from flowdl._profile.graph_methods import PROFILING_ATTRIBUTES, ProfilingMixin
from flowdl._replace.graph_methods import GraphReplacementMixin, nested_cells
from flowdl._tree.children import TREE_ATTRIBUTES
from flowdl._tree.graph_methods import TreeMixin


class Graph(
    GraphReplacementMixin, DrawingMixin, ProfilingMixin, ObservationMixin, TreeMixin, nn.Module
):
    """A built flow: an `nn.Module` running the nodes of the chain in a fixed plan.

    Build one with `fl.Flow(...).build()`. Its submodules are the modules of the
    chain (each registered once, under its node id such as ``Linear_0``), so
    `parameters()`, `state_dict()`, `.to()`, `.train()` / `.eval()`, `copy.deepcopy`,
    DDP and `torch.compile` behave as for any module. Replacing a submodule
    (``add_module``, ``setattr``, ``nn.SyncBatchNorm.convert_sync_batchnorm``) also
    replaces it in the plan, in loops, gates, switches and maps, at any depth.

    Call it as ``g(x, *aux, ctx=None)``: ``x`` feeds the entry module, ``aux`` the
    names given to `Flow.input`, in order; ``ctx`` (an `fl.Context`) bounds the
    call in time and lets another thread cancel it.

    Tags read before they are defined carry state from one call to the next. That
    state is stored detached from autograd, so a plain training loop never
    backpropagates into an earlier call; set ``g.backprop_state = True`` to keep the
    history (truncated backpropagation through time) and call `detach_state()` where
    the history should be cut.

    Example:
        >>> import torch, flowdl as fl
        >>> from torch import nn
        >>> g = fl.Flow(nn.Linear(2, 4)).through(nn.ReLU()).tag("hidden").build()
        >>> [name for name, _ in g.named_parameters()]
        ['Linear_0.weight', 'Linear_0.bias']
        >>> y = g(torch.randn(3, 2))
        >>> g.tagged("hidden").shape
        torch.Size([3, 4])
    """

    def __init__(self, record: FlowRecord) -> None:
        if not isinstance(record, FlowRecord):
            raise TypeError(
                "fl.Graph is not constructed directly; build one with fl.Flow(module)...build()"
            )
        super().__init__()
        self._record = record
        self._plan: Plan = compile_plan(record)
        self._steps = self._plan.steps
        self._tagged_values: list[Any] = []
        self._backprop_state = False
        self._fast: tuple[FastItem, ...] | None = None
        registered: dict[int, str] = {}  # id(module) -> the name it is registered under
        behind: dict[str, list[int]] = {}
        for position, node in enumerate(record.nodes):
            module = node.module
            if not isinstance(module, nn.Module):
                continue
            if id(module) not in registered:
                registered[id(module)] = self._free_name(node.id)
                self.add_module(registered[id(module)], module)
            behind.setdefault(registered[id(module)], []).append(position)
        # Which nodes each registered name stands for: replacing a child replaces the
        # module of these nodes only (all of them for a module shared at build time).
        self._nodes_behind: dict[str, tuple[int, ...]] = {
            name: tuple(positions) for name, positions in behind.items()
        }
        for tag, init in record.state_inits.items():
            if isinstance(init, nn.Parameter):  # a learned first-call state trains with the rest
                self.register_parameter(self._free_name(f"{tag}_init"), init)
        self._nested_cells: tuple[StateCell, ...] = nested_cells(self)
        self._start_watching()

    def _free_name(self, name: str) -> str:
        while hasattr(self, name):
            name += "_"
        return name

    # ----------------------------------------------------------------- running

    def forward(self, *inputs: Any, ctx: Context | None = None) -> Any:
        """Run the graph.

        Args:
            *inputs: ``x``, then one value per `Flow.input` name, in order.
            ctx: an `fl.Context` to bound the call in time or cancel it. Without
                one, the context of an enclosing graph call (if any) applies.

        Returns:
            the output of the last node of the chain.

        Raises:
            GraphError: a node failed (the original exception is chained), or the
                number of inputs is wrong.
            Cancelled: the context was cancelled.
            DeadlineExceeded: the context's deadline passed.
        """
        if self._clock_start is None and not torch.compiler.is_compiling():
            self._start_clock()  # observation's wall clock: one attribute check per call
        plan = self._plan
        if len(inputs) != plan.n_inputs:
            raise self._input_count_error(len(inputs))
        vals: list[Any] = [None] * plan.n_slots
        vals[: plan.n_inputs] = inputs
        if plan.resets:
            self._reset_modules(inputs[0])
        nested = self._nested_cells
        saved = [cell.value for cell in nested] if nested else None
        token = None
        if ctx is not None:
            token = _current.set(ctx)
        elif not torch.compiler.is_compiling():
            # Nested graphs inherit the context of the enclosing call. Under
            # torch.compile there is none to inherit (contexts are eager-only).
            ctx = _current.get()
        profiler = self._profiler  # profiling picks its own loop, once per call
        try:
            if profiler is None:
                self._run(vals, ctx)
            else:
                measured = profiler.run(self, vals, ctx)
        except BaseException:
            if saved is not None:  # a failed call leaves no trace in nested state either
                for cell, value in zip(nested, saved, strict=True):
                    cell.value = value
            raise
        finally:
            if token is not None:
                _current.reset(token)
        if plan.state_writes:
            keep = self._backprop_state
            for cell, slot in plan.state_writes:
                cell.value = vals[slot] if keep else detach(vals[slot])
        if plan.tag_slots:
            # Straight into __dict__: nn.Module.__setattr__ costs microseconds per call.
            self.__dict__["_tagged_values"] = [vals[s] for s in plan.tag_slots]
        if profiler is not None:
            profiler.publish(self, measured)
        return vals[plan.out_slot]

    def _run(self, vals: list[Any], ctx: Context | None) -> None:
        if self._fast is not None:
            self._run_fast(self._fast, vals, ctx)
            return
        i = -1
        try:
            if ctx is None:
                # `i` outlives the loop: on an error it names the failing step.
                for fn, a, b, rest, out, i in self._steps:  # noqa: B007
                    if b < 0:
                        vals[out] = fn(vals[a])
                    elif rest is None:
                        vals[out] = fn(vals[a], vals[b])
                    else:
                        vals[out] = fn(vals[a], vals[b], *[vals[j] for j in rest])
            else:
                check = ctx.check
                for fn, a, b, rest, out, i in self._steps:  # noqa: B007
                    check()
                    if b < 0:
                        vals[out] = fn(vals[a])
                    elif rest is None:
                        vals[out] = fn(vals[a], vals[b])
                    else:
                        vals[out] = fn(vals[a], vals[b], *[vals[j] for j in rest])
        except Cancelled:
            self._keep_partial_tags(vals, i)
            raise
        except Exception as error:
            self._keep_partial_tags(vals, i)
            raise self._node_error(i, vals, error) from error

    def _run_fast(self, items: tuple[FastItem, ...], vals: list[Any], ctx: Context | None) -> None:
        i = -1
        try:
            for item in items:
                if ctx is not None:
                    ctx.check()
                if isinstance(item, Segment):
                    i = item.first
                    try:
                        item(vals)
                    except Exception as error:
                        i, error = self._locate_failure(item, vals, error)
                        raise _Located(error) from error
                else:
                    fn, a, b, rest, out, i = item
                    if b < 0:
                        vals[out] = fn(vals[a])
                    elif rest is None:
                        vals[out] = fn(vals[a], vals[b])
                    else:
                        vals[out] = fn(vals[a], vals[b], *[vals[j] for j in rest])
        except Cancelled:
            self._keep_partial_tags(vals, i)
            raise
        except _CompiledSegmentError as failure:
            raise failure.error from failure.__cause__
        except _Located as located:
            self._keep_partial_tags(vals, i)
            raise self._node_error(i, vals, located.error) from located.error
        except Exception as error:
            self._keep_partial_tags(vals, i)
            raise self._node_error(i, vals, error) from error

    def _locate_failure(
        self, segment: Segment, vals: list[Any], error: Exception
    ) -> tuple[int, Exception]:
        """Re-run a failed segment eagerly: the failing step and its eager exception."""
        i = segment.first
        try:
            for step in segment.steps:
                i = step[5]
                run_steps((step,), vals)
        except Exception as eager:
            return i, eager
        ids = ", ".join(self._plan.step_nodes[step[5]].id for step in segment.steps)
        raise _CompiledSegmentError(
            GraphError(
                f"the compiled segment of nodes {ids} failed, but the same nodes run eagerly: "
                f"{type(error).__name__}: {_first_line(error)}",
                expected="torch.compile to compile what runs eagerly",
                received=f"{type(error).__name__} from torch.compile",
                fix="call g.compile() with other options (e.g. backend='aot_eager'), or "
                "rebuild the graph to run it eagerly",
            )
        ) from error

    def _reset_modules(self, x: Any) -> None:
        if isinstance(x, Tensor):
            batch = x.shape[0] if x.dim() > 0 else 1
            device = x.device
        else:
            batch, device = 1, torch.device("cpu")
        for node, reset in self._plan.resets:
            try:
                reset(batch, device)
            except Exception as error:
                raise GraphError(
                    f"{node.id}.reset(batch_size={batch}, device={device}) raised "
                    f"{type(error).__name__}: {_first_line(error)}",
                    node_id=node.id,
                    tags=tuple(node.tags),
                    call=str(node.call),
                    fix="reset(batch_size, device) runs before every forward of the graph "
                    "(the Resettable protocol); make it accept this batch size and device",
                ) from error

    def _keep_partial_tags(self, vals: list[Any], failed_step: int) -> None:
        """After a failed call, tags computed before the failure keep their new values."""
        plan = self._plan
        self.__dict__["_tagged_values"] = [
            vals[slot] if step < failed_step else None
            for slot, step in zip(plan.tag_slots, plan.tag_steps, strict=True)
        ]

    def __getstate__(self) -> dict[str, Any]:
        # The last call's tagged values are an observation, not part of the model:
        # copies and pickles start without them (and without their autograd graphs).
        # Compiled code does not travel either: copies run eagerly until compiled.
        state = super().__getstate__()
        state["_tagged_values"] = []
        state["_fast"] = None
        state.pop("_fast_options", None)
        # profiles, observation (histories, hooks) and tree caches stay with the original
        for name in (*PROFILING_ATTRIBUTES, *OBSERVATION_ATTRIBUTES, *TREE_ATTRIBUTES):
            state.pop(name, None)
        return state

    # ---------------------------------------------------------------- fast mode

    def compile(self, *args: Any, **kwargs: Any) -> None:
        """Fast mode: compile the static stretches of the graph with `torch.compile`.

        Consecutive nodes whose work is fixed at build time (modules, merges,
        residuals, ``for_`` loops, dense gates) become one function compiled with
        ``torch.compile(..., fullgraph=True, **kwargs)``; state reads, halting
        loops, switches, sparse gates, maps and nested graphs stay in the
        executor, so their run-time decisions never break a compiled graph or
        recompile it. Nested graphs are compiled the same way. In place, like
        `nn.Module.compile`; the first call of each segment pays the compilation.
        The context (``ctx``) is checked between segments. Copies (`copy.deepcopy`,
        pickling) run eagerly until compiled again. Replacing a submodule of a
        compiled graph compiles its segments again, with the same options (graphs
        brought in by the replacement too); each new segment pays its compilation
        at its first call.

        Args:
            **kwargs: passed to `torch.compile` (``backend``, ``mode``, ``dynamic``...).

        Example:
            >>> import torch, flowdl as fl
            >>> g = fl.Flow(torch.nn.Linear(4, 4)).through(torch.nn.ReLU()).build()
            >>> g.compile(backend="eager")
            >>> g(torch.randn(2, 4)).shape
            torch.Size([2, 4])
        """
        if args:
            raise TypeError(
                "Graph.compile() takes torch.compile's options as keywords, e.g. "
                f"g.compile(mode='max-autotune'); received positional {args!r}"
            )
        for module in self.modules():
            if isinstance(module, Graph):
                module._fast = split_plan(module._plan, kwargs)
                module._fast_options = dict(kwargs)  # to compile again after a replacement

    @property
    def compiled(self) -> bool:
        """Whether `compile` put this graph in fast mode."""
        return self._fast is not None

    # ------------------------------------------------------------------ errors

    def _input_count_error(self, got: int) -> GraphError:
        names = self._plan.input_names
        return GraphError(
            f"the graph takes {plural(len(names), 'input')} ({', '.join(names)}), got {got}",
            expected=f"g({', '.join(names)})"
            + (" — the names after x come from .input(...)" if len(names) > 1 else ""),
            received=f"{plural(got, 'input')}",
            fix="pass one value per graph input, in declaration order",
        )

    def _node_error(self, i: int, vals: list[Any], error: Exception) -> GraphError:
        plan = self._plan
        node = plan.step_nodes[i]
        values = [vals[s] for s in plan.step_slots[i]]
        labels = self._port_labels(i)
        if node.kind is NodeKind.STATE_READ:
            fix: str | None = (
                f"the first call's value of state {node.state_tag!r} could not be made from the "
                "consumer's stream; declare it with .tag(name, init=shape_or_callable)"
            )
        else:
            fix = self._state_batch_hint(node.inputs, values)
        inputs = tuple(
            f"{label}: {describe_value(v)}" for label, v in zip(labels, values, strict=True)
        )
        if isinstance(error, ControlFlowError):
            return GraphError(
                f"{node.id}: {error.problem}",
                node_id=node.id,
                tags=tuple(node.tags),
                call=str(node.call),
                expected=error.expected,
                received="\n".join(
                    [*(f"input {i}: {d}" for i, d in enumerate(inputs)), error.received or ""]
                ).strip(),
                fix=fix or error.fix,
            )
        return GraphError(
            f"{node.id} raised {type(error).__name__}: {_first_line(error)}",
            node_id=node.id,
            tags=tuple(node.tags),
            call=str(node.call),
            inputs=inputs,
            fix=fix,
        )

    def _port_labels(self, i: int) -> list[str]:
        node = self._plan.step_nodes[i]
        nodes = self._record.nodes
        if node.kind is NodeKind.STATE_READ:
            return ["consumer's stream (shapes the first call's zeros)"]
        if node.kind is NodeKind.MERGE:
            labels = [f"branch {k}" for k in range(node.n_stream)]
        elif node.kind is NodeKind.RESIDUAL:
            labels = ["stream", "module output"]
        else:
            labels = ["stream"]
        for name, producer in zip(node.ref_names, node.inputs[node.n_stream :], strict=True):
            state = nodes[producer].kind is NodeKind.STATE_READ
            labels.append(f"ref {name!r}" + (" (state from the previous call)" if state else ""))
        return labels

    def _state_batch_hint(self, inputs: list[int], values: list[Any]) -> str | None:
        nodes = self._record.nodes
        stream = values[0] if values else None
        if not isinstance(stream, Tensor) or stream.dim() == 0:
            return None
        for producer, value in zip(inputs, values, strict=True):
            if (
                nodes[producer].kind is NodeKind.STATE_READ
                and isinstance(value, Tensor)
                and value.dim() > 0
                and value.shape[0] != stream.shape[0]
            ):
                return (
                    f"state {nodes[producer].state_tag!r} from the previous call has batch "
                    f"size {value.shape[0]} but this call's stream has {stream.shape[0]}; "
                    "call g.reset_state() when the batch size changes"
                )
        return None

    # -------------------------------------------------------------- the state

    @property
    def backprop_state(self) -> bool:
        """Whether state keeps its autograd history from one call to the next.

        ``False`` (the default): state is stored detached, so backward never reaches
        an earlier call. ``True``: gradients flow across calls until `detach_state()`
        cuts the history (truncated backpropagation through time). Setting it sets
        it on every nested graph too.
        """
        return self._backprop_state

    @backprop_state.setter
    def backprop_state(self, keep: bool) -> None:
        for module in self.modules():
            if isinstance(module, Graph):
                module._backprop_state = bool(keep)

    def reset_state(self) -> None:
        """Forget all forward-reference state, here and in nested graphs.

        The next call reads initial values (zeros unless declared), as a first call does.
        """
        for module in self.modules():
            if isinstance(module, Graph):
                for cell in module._plan.cells.values():
                    cell.value = None

    def detach_state(self) -> None:
        """Cut the autograd history of all state, keeping its values; recursive.

        Graphs store state detached unless ``backprop_state`` is set, so this
        matters for those graphs, and for nested modules with their own
        ``detach_state()`` method, which it calls too.
        """
        for module in self.modules():
            if isinstance(module, Graph):
                for cell in module._plan.cells.values():
                    if cell.value is not None:
                        cell.value = detach(cell.value)
            elif module is not self:
                method = getattr(module, "detach_state", None)
                if callable(method):
                    method()

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> Graph:
        """Move state with the parameters on ``.to()``, ``.double()``, ``.cuda()``..."""
        super()._apply(fn, recurse)  # type: ignore[no-untyped-call]
        for cell in self._plan.cells.values():
            if cell.value is not None:
                cell.value = map_tensors(fn, cell.value)
        # The record's declared initial values move too: a recompiled plan reads them.
        inits = self._record.state_inits
        for tag, init in inits.items():
            if isinstance(init, Tensor) and not isinstance(init, nn.Parameter):
                inits[tag] = fn(init)
        for read in self._plan.state_reads:
            read.init = inits.get(read.cell.tag)
        return self

    # ------------------------------------------------------------ observation

    def tagged(self, tag: str) -> Any:
        """The value a tag had in the last call, or ``None`` before any call.

        Raises:
            KeyError: the tag does not exist in this graph (the message lists those that do).
        """
        index = self._plan.tag_index.get(tag)
        if index is None:
            known = ", ".join(self._plan.tag_index) or "none"
            raise KeyError(f"no tag {tag!r} in this graph; its tags are: {known}")
        values = self._tagged_values
        return values[index] if index < len(values) else None

    def traces(self, tag: str) -> list[Any] | None:
        """What the loop named `tag` traced in the last call, or ``None``.

        A loop body with a ``trace()`` method (the `flowdl.protocols.Traced`
        protocol) is traced once before the first iteration and once after each
        iteration, so ``for_(n)`` gives ``n + 1`` entries. The entries keep their
        autograd history. ``None`` when the tag does not name a loop, the body has
        no ``trace()``, or the graph has not run.

        Raises:
            KeyError: the tag does not exist in this graph.
        """
        loop = self._loop_at(tag)
        if loop is None or loop._trace is None or not loop.traces:
            return None
        return list(loop.traces)

    def iterations(self, tag: str) -> Tensor | None:
        """How many iterations each sample ran in the loop named `tag`, in the last call.

        An ``int64`` tensor of shape ``[B]``; all entries are equal for ``for_(n)``
        and whole-batch halting. ``None`` when the tag does not name a loop or the
        graph has not run. The counts carry no gradient; see the tutorial's
        "Advanced graphs" chapter for building a ponder cost from them.

        Raises:
            KeyError: the tag does not exist in this graph.
        """
        loop = self._loop_at(tag)
        if loop is None or not self._tagged_values:
            return None
        return loop.iterations

    def _loop_at(self, tag: str) -> Loop | None:
        self.tagged(tag)  # raises the KeyError listing the tags
        module = self._record.nodes[self._record.tags[tag]].module
        return module if isinstance(module, Loop) else None

    # ------------------------------------------------------------ description

    @property
    def n_inputs(self) -> int:
        """How many inputs the graph is called with (``x`` plus `Flow.input` names)."""
        return self._plan.n_inputs

    @property
    def input_names(self) -> tuple[str, ...]:
        """The names of the inputs, in call order; the first is ``"x"``."""
        return self._plan.input_names

    @property
    def label(self) -> str | None:
        """The name given by `Flow.label`, or ``None``."""
        return self._record.label

    @property
    def tags(self) -> tuple[str, ...]:
        """Every tag of this graph, in the order they were defined."""
        return tuple(self._record.tags)

    @property
    def tag_groups(self) -> dict[str, tuple[str, ...]]:
        """Tag groups from `Flow.tag_group`: group -> member tags."""
        return dict(self._record.groups)

    @property
    def levels(self) -> tuple[tuple[str, ...], ...]:
        """Node ids by level: level 0 holds the inputs; the nodes of a level are independent."""
        by_level: dict[int, list[str]] = {}
        for node in self._record.nodes:
            by_level.setdefault(self._plan.node_levels[node.index], []).append(node.id)
        return tuple(tuple(by_level[k]) for k in sorted(by_level))

    def short_description(self) -> str:
        """``Graph 'encoder'`` when labelled, else ``Graph(5 nodes)``."""
        if self.label is not None:
            return f"Graph {self.label!r}"
        return f"Graph({plural(len(self._record.nodes), 'node')})"

    def __repr__(self) -> str:
        return render_chain(self)


class _Located(Exception):
    """Carries the eager exception of the node that made a compiled segment fail."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class _CompiledSegmentError(Exception):
    """Carries the error of a segment that fails compiled but not eagerly."""

    def __init__(self, error: GraphError) -> None:
        super().__init__(str(error))
        self.error = error


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else ""
