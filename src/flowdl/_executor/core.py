"""`GraphCore`: a built flow as an `nn.Module` whose forward runs a precomputed plan.

The core is what every graph is: construction from the builder's record, the plan,
the forward pass, forward-reference state, the values of tags, loop traces and
iteration counts, fast mode, and ``repr``. Everything else a graph can do
(observation, trends, drawing, profiling, the tree, replacing submodules) is a
feature class built on this one; `fl.Graph` (``flowdl._graph``) puts them together.

What the core offers its features:

- ``_record`` and ``_plan``, read-only (only the replacement feature changes the
  record's nodes, and it recompiles the plan with `_recompile`);
- ``_first_call``: when the graph first ran (the observation clock starts there);
- `_instrument_with`: run the plan through an `Instrument` instead of the plain
  loop (profiling);
- ``_transient``: a feature declares the attributes that copies and pickles leave
  behind, and `__getstate__` drops them without knowing the feature.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar, NoReturn

import torch
from torch import Tensor, nn

from flowdl._context import Context, _current
from flowdl._control.loop import Loop
from flowdl._errors import passes_through
from flowdl._executor.described import Described
from flowdl._executor.failures import (
    inference_state_error,
    input_count_error,
    named_inputs,
    node_error,
    reset_error,
    state_export_error,
)
from flowdl._executor.fast import FastItem, split_plan
from flowdl._executor.graph_state import GraphState
from flowdl._executor.guard import StateGuard
from flowdl._executor.observed import Observed
from flowdl._executor.plan import Plan, nested_cells
from flowdl._executor.planner import compile_plan
from flowdl._executor.state import StateCell, detach
from flowdl._executor.steps import Instrument, run_lean, run_plan
from flowdl._ir.record import FlowRecord

__all__ = ["GraphCore", "nested_cells"]  # nested_cells: re-exported from plan


class GraphCore(Described, GraphState):
    """The executor's graph: construction, forward, the plan, state, tags, repr.

    See `fl.Graph` for what a graph is to its users; this class is the part of it
    that runs. Features subclass it; nothing below the core imports it (the parts
    recognise a graph by its plan, `flowdl._executor.plan.plan_of`).
    """

    _transient: ClassVar[tuple[str, ...]] = (
        "_fast_options",
        "_first_call",
        "_instrument",
    )
    """Attributes copies and pickles leave behind; each feature class declares its own."""

    _first_call: float | None = None
    """`time.monotonic()` of the first eager forward."""
    _instrument: Instrument | None = None
    """What runs the plan instead of the plain loop (profiling), or ``None``."""
    _fast_options: dict[str, Any] | None = None
    """The keyword arguments of the last `compile` (fast mode), to compile again."""
    _lean: Plan | None = None
    """The plan when a call needs nothing but its steps (`_relean`), else ``None``."""

    def __init__(self, record: FlowRecord) -> None:
        if not isinstance(record, FlowRecord):
            raise TypeError(
                "fl.Graph is not constructed directly; build one with fl.Flow(module)...build()"
            )
        super().__init__()
        self._record = record
        self._plan: Plan = compile_plan(record)
        self._observed = Observed()
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
        # Tensor inits become the graph's parameters and buffers: saved, loaded, moved.
        self._register_inits(record)
        self._nested_cells: tuple[StateCell, ...] = nested_cells(self)
        self._guard: StateGuard | None = None
        self._nested_observed: tuple[Observed, ...] = ()
        self._watch_nested()

    def _watch_nested(self) -> None:
        """Derive from the nested graphs what a call must look after (after a replacement
        too): the state guard, and the observations to empty at the start of a call."""
        nested = [m for m in self.modules() if isinstance(m, GraphCore) and m is not self]
        state = self.__dict__
        state["_nested_observed"] = tuple(g._observed for g in nested if g._plan.tag_slots)
        inner = [(g._guard, tuple(g._plan.cells.values()), g) for g in nested if g._guard]
        if not self._plan.cells and not inner:
            state["_guard"] = None
        else:
            cells = (*self._plan.cells.values(), *self._nested_cells)
            observed = (self._observed, *self._nested_observed)
            loops = [m for m in self.modules() if isinstance(m, Loop)]
            if self._guard is None:
                state["_guard"] = StateGuard(cells, inner, observed, loops)
            else:
                self._guard.refresh(cells, inner, observed, loops)
        self._relean()

    def _relean(self) -> None:
        """Whether a call is its steps and nothing else: no state (own or nested), no
        tags (own or nested), no resets, not profiled, not in fast mode. Such a call
        (a nested residual block, an expert, a loop body) takes `forward`'s short path
        when it runs eagerly without a context; it computes what `_run` computes.
        Derived again whenever one of these changes."""
        plan = self._plan
        lean = not (
            self._guard
            or self._nested_cells
            or self._nested_observed
            or plan.tag_slots
            or plan.state_writes
            or plan.resets
            or self._instrument
            or self._fast
        )
        self.__dict__["_lean"] = plan if lean else None

    # ----------------------------------------------------------------- running

    def forward(self, *inputs: Any, ctx: Context | None = None, **named: Any) -> Any:
        """Run the graph.

        Calls of a graph with state (its own or a nested graph's) are serialised:
        threads may share it, one call runs at a time. Observation read after a
        call (`tagged`, `iterations`, `traces`) is the calling thread's own.

        Args:
            *inputs: ``x``, then one value per `Flow.input` name, in order.
            ctx: an `fl.Context` to bound the call in time or cancel it. Without
                one, the context of an enclosing graph call (if any) applies.
            **named: inputs by their declared names, after the positional ones:
                ``g(x, mask=m)`` for ``.input("mask")``.

        Returns:
            the output of the last node of the chain.

        Raises:
            GraphError: a node failed (the original exception is chained), or the
                number of inputs is wrong.
            Cancelled: the context was cancelled.
            DeadlineExceeded: the context's deadline passed.
        """
        lean = self._lean
        if (
            lean is not None
            and ctx is None
            and not named
            and not torch.compiler.is_compiling()
            and _current.get() is None
        ):
            # The short path: `_run` with nothing to do but the steps (`_relean`).
            if self._first_call is None:
                self.__dict__["_first_call"] = time.monotonic()
            if len(inputs) != lean.n_inputs:
                raise input_count_error(lean, len(inputs))
            return run_lean(self, lean, inputs)
        if named:
            inputs = named_inputs(self._plan, inputs, named)
        guard = self._guard
        if guard is None:
            return self._run(inputs, ctx)
        if torch.compiler.is_compiling():  # traced: no locks, no checkpoint phases
            if torch.compiler.is_exporting():
                raise state_export_error(self._plan, self._nested_cells)
            if guard.enclosed:
                return self._run(inputs, ctx)
            return guard.enclosing(self, inputs, ctx)
        return guard.call(self, inputs, ctx)

    def _run(self, inputs: tuple[Any, ...], ctx: Context | None) -> Any:
        """The call itself: the plan's steps, then state and tags written."""
        traced = torch.compiler.is_compiling()
        if self._first_call is None and not traced:
            self.__dict__["_first_call"] = time.monotonic()  # one attribute check per call
        plan = self._plan
        if len(inputs) != plan.n_inputs:
            raise input_count_error(plan, len(inputs))
        for observed in self._nested_observed:  # a nested graph that does not run reports nothing
            if traced:
                observed.publish_traced([])
            else:
                observed.publish([])
        vals: list[Any] = [None] * plan.n_slots
        vals[: plan.n_inputs] = inputs
        if plan.resets:
            self._reset_modules(inputs[0])
        nested = self._nested_cells
        saved = [cell.value for cell in nested] if nested else None
        token = None
        if ctx is not None:
            token = _current.set(ctx)
        elif not traced:
            # Nested graphs inherit the context of the enclosing call. Under
            # torch.compile there is none to inherit (contexts are eager-only).
            ctx = _current.get()
        instrument = self._instrument
        try:
            if instrument is None:
                run_plan(self, vals, ctx)
            else:
                measured = instrument.run(self, vals, ctx)
        except BaseException:
            if saved is not None:  # a failed call leaves no trace in nested state either
                for cell, value in zip(nested, saved, strict=True):
                    cell.value = value
            raise
        finally:
            if token is not None:
                _current.reset(token)
        if plan.state_writes:
            # Within an enclosing call, state stays on the tape (see StateGuard).
            keep = self._backprop_state or self._guard.enclosed  # type: ignore[union-attr]
            for cell, slot in plan.state_writes:
                cell.value = vals[slot] if keep else detach(vals[slot])
        if plan.tag_slots:
            values = [vals[s] for s in plan.tag_slots]
            if traced:
                self._observed.publish_traced(values)
            else:
                self._observed.publish(values)
        if instrument is not None:
            instrument.publish(self, measured)
        return vals[plan.out_slot]

    def _step_failed(self, vals: list[Any], index: int, error: BaseException) -> NoReturn:
        """The one failure path of the step loops: step `index` raised `error`.

        Tags computed before that step keep their new values; a cancellation (or
        any `BaseException` that is not an `Exception`) passes through, anything
        else becomes a `GraphError` naming the node.
        """
        plan = self._plan
        self._observed.publish(
            [
                vals[slot] if step < index else None
                for slot, step in zip(plan.tag_slots, plan.tag_steps, strict=True)
            ]
        )
        if not isinstance(error, Exception) or passes_through(error):
            raise error
        inference = inference_state_error(plan, self._record, index, self._nested_cells, error)
        if inference is not None:
            raise inference from error
        raise node_error(plan, self._record, index, vals, error) from error

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
                raise reset_error(node, batch, device, error) from error

    def __getstate__(self) -> dict[str, Any]:
        # The last call's tagged values are an observation, not part of the model:
        # copies and pickles start without them (and without their autograd graphs).
        # Compiled code does not travel either: copies run eagerly until compiled.
        # Each feature's transient attributes (profiles, histories, caches) stay
        # with the original.
        state: dict[str, Any] = super().__getstate__()  # type: ignore[no-untyped-call]
        state["_fast"] = None
        for cls in type(self).__mro__:
            for name in cls.__dict__.get("_transient", ()):
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
            if isinstance(module, GraphCore):
                module._compile_fast(dict(kwargs))

    def _compile_fast(self, options: dict[str, Any]) -> None:
        state = self.__dict__
        state["_fast"] = split_plan(self._plan, options)
        state["_fast_options"] = options  # to compile again after a replacement
        self._relean()

    @property
    def compiled(self) -> bool:
        """Whether `compile` put this graph in fast mode."""
        return self._fast is not None

    def _recompile(self) -> None:
        """Plan again from the record, after its nodes changed (a submodule was replaced).

        The state cells are kept (state carried across calls survives, and graphs
        holding this one keep pointing at the same cells). In fast mode the new
        plan's segments are compiled with the options of `compile`, and so are
        graphs brought in by the replacement. Caches that features derive from the
        plan see a new plan and rebuild themselves.
        """
        state = self.__dict__
        state["_plan"] = compile_plan(self._record, self._plan.cells)
        state["_nested_cells"] = nested_cells(self)
        self._watch_nested()
        if self._fast is not None:
            options = self._fast_options or {}
            for module in self.modules():
                if isinstance(module, GraphCore) and module is not self and module._fast is None:
                    module._compile_fast(options)
            self._compile_fast(options)

    def _instrument_with(self, instrument: Instrument | None) -> None:
        """Run every forward through `instrument` from now on (``None``: the plain loop)."""
        self.__dict__["_instrument"] = instrument
        self._relean()

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
        values = self._observed.values
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
        if loop is None or loop._trace is None or not loop.traces or self.tagged(tag) is None:
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
        out = self.tagged(tag)
        if loop is None or out is None:  # not run in this thread's last call
            return None
        if loop.mode == "for":  # also when the loop ran in compiled code, unobserved
            batch = out.shape[0] if isinstance(out, Tensor) and out.dim() else 1
            device = out.device if isinstance(out, Tensor) else None
            return torch.full((batch,), loop.max_iter, dtype=torch.int64, device=device)
        return loop.iterations

    def _loop_at(self, tag: str) -> Loop | None:
        self.tagged(tag)  # raises the KeyError listing the tags
        module = self._record.nodes[self._record.tags[tag]].module
        return module if isinstance(module, Loop) else None
