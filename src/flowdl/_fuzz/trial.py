"""One description on trial: build it, call it, and compare with the interpreter.

A valid description is built and called several times in a row (state carries from
call to call; some calls start with ``reset_state()``), eagerly and, when asked, in
fast mode (``g.compile(backend="eager")``), and each call is compared with the
interpreter's: the output, the gradients of a weighted sum of it with respect to the
inputs and to every parameter, the top-level tagged values and loop iterations, and
whether the nested graphs that did not run report no tagged value. An invalid
description must raise `fl.BuildError` when built. The first call that disagrees
ends the trial (later calls would inherit its state).
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

import flowdl as fl
from flowdl._fuzz.build import Built, build
from flowdl._fuzz.interpret import Interpreter, Outcome
from flowdl._fuzz.ir import Description, called_once, defined
from flowdl._fuzz.leaves import DTYPE, draw

RTOL, ATOL = 1e-7, 1e-9
"""How close (``torch.allclose``) float64 results must be."""


@dataclass
class Verdict:
    """What became of one description, in one mode.

    Attributes:
        status: ``"ok"``, ``"rejected"`` (an invalid description refused, as it must
            be), ``"mismatch"`` or ``"crash"``.
        details: what disagreed, or what raised (first line first).
        built: whether the graph was built.
    """

    status: str
    details: list[str] = field(default_factory=list)
    built: bool = False

    @property
    def failed(self) -> bool:
        """Whether this is a mismatch or a crash."""
        return self.status in ("mismatch", "crash")


@dataclass
class Inputs:
    """One call's inputs: the stream, the auxiliary inputs, the weights of the loss."""

    x: Tensor
    aux: list[Tensor]
    loss_weights: Tensor

    def fresh(self) -> tuple[Tensor, list[Tensor]]:
        """Copies that require grad, for one side."""
        return (
            self.x.clone().requires_grad_(True),
            [a.clone().requires_grad_(True) for a in self.aux],
        )


def inputs_for(description: Description, index: int) -> Inputs:
    """The inputs of call `index`, drawn from the description's seed."""
    call, graph = description.calls[index], description.graph
    b, d = call.batch, graph.dim
    shapes = {"batched": (b, d), "vector": (d,), "row": (1, d)}
    seed = (description.seed * 131 + index) % (1 << 62)
    x, weights, *aux = draw(seed, (b, d), (b, d), *(shapes[i.shape] for i in graph.inputs))
    return Inputs(x, aux, weights)


def _close(a: Tensor, b: Tensor) -> str | None:
    """``None`` when `a` and `b` agree, else how they differ."""
    if a.shape != b.shape:
        return f"shape {tuple(a.shape)} vs {tuple(b.shape)}"
    if torch.allclose(a, b, rtol=RTOL, atol=ATOL, equal_nan=True):
        return None
    return f"max abs diff {float((a - b).detach().abs().max()):.3g}"


def _gradients(loss: Tensor, inputs: list[Tensor], params: dict[str, Tensor]) -> list[Tensor]:
    wrt = inputs + list(params.values())
    live = [t for t in wrt if t.requires_grad]
    found: dict[int, Tensor | None] = {}
    if loss.requires_grad and live:
        grads = torch.autograd.grad(loss, live, allow_unused=True)
        found = {id(t): g for t, g in zip(live, grads, strict=True)}
    return [g if (g := found.get(id(t))) is not None else torch.zeros_like(t) for t in wrt]


def _compare_call(
    built: Built,
    interp: Interpreter,
    inputs: Inputs,
    description: Description,
    compare_to: Tensor | None,
) -> tuple[list[str], Tensor]:
    """Run one call on both sides; return what disagreed and the graph's output."""
    graph = built.graph
    x_g, aux_g = inputs.fresh()
    x_i, aux_i = inputs.fresh()
    try:
        out_g = graph(x_g, *aux_g)
    except Exception as error:
        raise _Raised("the graph", error) from error
    try:
        expected: Outcome = interp.call(x_i, aux_i)
    except Exception as error:
        raise _Raised("the interpreter", error) from error
    problems: list[str] = []
    diff = _close(out_g, expected.output)
    if diff:
        return [f"output differs: {diff}"], out_g.detach()
    if compare_to is not None and (diff := _close(out_g, compare_to)):
        problems.append(f"output differs from the eager graph's: {diff}")
    keys = sorted(set(built.params) | set(interp.params))
    zeros = {k: torch.zeros(0, dtype=DTYPE) for k in keys}
    params_g = {k: built.params.get(k, zeros[k]) for k in keys}
    params_i = {k: interp.params.get(k, built.params.get(k, zeros[k]).detach()) for k in keys}
    names = ["x", *(f"input {i.name}" for i in description.graph.inputs), *keys]
    grads_g = _gradients((out_g * inputs.loss_weights).sum(), [x_g, *aux_g], params_g)
    grads_i = _gradients((expected.output * inputs.loss_weights).sum(), [x_i, *aux_i], params_i)
    for name, a, b in zip(names, grads_g, grads_i, strict=True):
        if diff := _close(a, b):
            problems.append(f"gradient w.r.t. {name} differs: {diff}")
    for tag, value in expected.tags.items():
        got = graph.tagged(tag)
        if not isinstance(got, Tensor):
            problems.append(f"tagged({tag!r}) is {type(got).__name__}, expected a tensor")
        elif diff := _close(got, value):
            problems.append(f"tagged({tag!r}) differs: {diff}")
    for tag, counts in expected.iterations.items():
        got = graph.iterations(tag)
        if not isinstance(got, Tensor) or not torch.equal(got.cpu(), counts):
            problems.append(f"iterations({tag!r}) is {got}, expected {counts}")
    problems += _stale_tags(built, expected, description)
    return problems, out_g.detach()


def _stale_tags(built: Built, expected: Outcome, description: Description) -> list[str]:
    """A nested graph that did not run in this call has no tagged values; one that ran has.

    Only for graphs that run at most once per call: inside a loop or a map, which of
    a graph's several calls the tags reflect is not something the docs fix.
    """
    problems = []
    for spec in called_once(description.graph):
        nested = built.nested.get(spec.uid)
        if nested is None:
            continue
        for tag in defined(spec.steps):
            value = nested.tagged(tag)
            if spec.uid not in expected.ran and value is not None:
                problems.append(f"{spec.uid}.tagged({tag!r}) is stale: {spec.uid} did not run")
            elif spec.uid in expected.ran and value is None:
                problems.append(f"{spec.uid}.tagged({tag!r}) is None: {spec.uid} ran")
    return problems


class _Raised(Exception):
    """`who` (the graph or the interpreter) raised `error` during a call."""

    def __init__(self, who: str, error: Exception) -> None:
        super().__init__(who)
        self.who, self.error = who, error


def _crash(what: str, error: BaseException) -> Verdict:
    lines = traceback.format_exception_only(type(error), error)
    first = "".join(lines).strip().splitlines()
    return Verdict("crash", [f"{what} raised {first[0]}", *first[1:6]])


def run_trial(
    description: Description, fast: bool = False, eager_outputs: list[Tensor] | None = None
) -> tuple[Verdict, list[Tensor]]:
    """Check `description` in eager mode (or in fast mode when `fast`, also comparing
    with `eager_outputs`); return the verdict and the graph's outputs per call.

    Example:
        >>> from flowdl._fuzz.describe import describe
        >>> verdict, outputs = run_trial(describe(5))
        >>> verdict.status in ("ok", "rejected", "mismatch", "crash")
        True
    """
    try:
        built = build(description)
    except fl.BuildError as error:
        if description.invalid:
            return Verdict("rejected"), []
        return _crash("build() of a valid description", error), []
    except Exception as error:
        return _crash("build()", error), []
    if description.invalid:
        return Verdict("mismatch", [f"built although invalid ({description.invalid})"]), []
    if fast:
        try:
            built.graph.compile(backend="eager")
        except Exception as error:
            return replace(_crash("compile()", error), built=True), []
    interp = Interpreter(description)
    outputs: list[Tensor] = []
    for index, call in enumerate(description.calls):
        if call.reset:
            built.graph.reset_state()
            interp.reset()
        compare_to = None
        if eager_outputs is not None and index < len(eager_outputs):
            compare_to = eager_outputs[index]
        try:
            problems, output = _compare_call(
                built, interp, inputs_for(description, index), description, compare_to
            )
        except _Raised as raised:
            return replace(_crash(f"call {index}: {raised.who}", raised.error), built=True), outputs
        except Exception as error:
            return replace(_crash(f"call {index}: the comparison", error), built=True), outputs
        outputs.append(output)
        if problems:
            details = [f"call {index}: {p}" for p in problems]
            return Verdict("mismatch", details, built=True), outputs
    return Verdict("ok", built=True), outputs
