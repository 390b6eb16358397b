"""Run the dynamic suite: five arms per model, checked equal, then timed in paired rounds.

The arms: the hand-written model with indexing (``index``) and with masks (``mask``),
`torch.compile` of one of them (``compiled``), the flowdl graph run eagerly
(``flowdl``) and in fast mode (``flowdl fast``, `Graph.compile`). All start from the
same weights; before anything is timed, every arm's output and gradients on the
first batch are checked against ``index`` (`check_equal`). Then each arm trains
epochs over the same batches (`flowdl._bench.protocol`), arms interleaved round by
round, and Dynamo's counters say how many graphs each compiled arm made.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from torch import nn
from torch._dynamo.utils import counters

from flowdl._bench.dynamic.models import DYNAMIC_MODELS
from flowdl._bench.dynamic.parts import DynamicModel, Formulated
from flowdl._bench.pair import Batch, LossFn, ParityError
from flowdl._bench.protocol import TUNED, Arm, interleave, make_adam
from flowdl._bench.stats import Summary, paired_ratio
from flowdl._bench.suite import machine_info

HAND = ("index", "mask", "compiled")
FLOWDL = ("flowdl", "flowdl fast")
ARMS = HAND + FLOWDL


@dataclass(frozen=True)
class DynamicConfig:
    """What the dynamic suite runs (defaults: the issue's sizes)."""

    models: tuple[str, ...] = tuple(DYNAMIC_MODELS)
    batch: int = 256
    dim: int = 128
    batches: int = 8
    warmup: int = 2
    rounds: int = 10
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    seed: int = 0
    backend: str = "inductor"
    """`torch.compile`'s backend, for the compiled arm and flowdl's fast mode."""
    clock: str = "wall"
    """``"wall"`` (`time.perf_counter`) or ``"cpu"`` (`time.process_time`: the process's
    CPU time, which time spent waiting for a core on a shared machine does not reach;
    meaningful for one thread on the CPU only)."""


@dataclass
class DynamicResult:
    """One model: each arm's epoch times, round by round, and what was compiled.

    Attributes:
        graphs: per compiled arm, Dynamo graphs made before timing (the equality
            check and the warm-up epochs) and during the timed rounds (recompiles).
        differences: per arm, the largest difference from ``index`` (outputs and
            gradients, relative to their scale) in the equality check.
    """

    name: str
    sizes: dict[str, int]
    formulation: str
    compiled: str
    times: dict[str, list[float]]
    graphs: dict[str, tuple[int, int]]
    differences: dict[str, float]

    def summary(self, arm: str) -> Summary:
        return Summary.of(self.times[arm])

    def ratio(self, arm: str, to: str) -> Summary:
        """``arm ÷ to``, round by round."""
        return paired_ratio(self.times[arm], self.times[to])

    def best(self, arms: tuple[str, ...]) -> str:
        """The arm of `arms` with the lowest median."""
        return min(arms, key=lambda a: self.summary(a).median)


@dataclass
class DynamicSuiteResult:
    """The whole run."""

    config: DynamicConfig
    machine: dict[str, str]
    command: str
    models: list[DynamicResult] = field(default_factory=list)
    seconds: float = 0.0


def _graphs() -> int:
    return int(counters["stats"]["unique_graphs"])


def _parameters(module: nn.Module) -> dict[str, nn.Parameter]:
    return dict(module.named_parameters())


def build_arms(
    spec: DynamicModel, backend: str = "inductor"
) -> tuple[dict[str, nn.Module], dict[str, dict[str, Any]]]:
    """The five models (each with its own copy of the weights) and their named parameters."""
    models: dict[str, nn.Module] = {}
    params: dict[str, dict[str, Any]] = {}
    for arm in ("index", "mask", "compiled"):
        hand: Formulated = copy.deepcopy(spec.model)
        hand.formulation = spec.compiled if arm == "compiled" else arm
        params[arm] = _parameters(hand)
        models[arm] = compile_module(hand, backend) if arm == "compiled" else hand
    for arm in FLOWDL:
        twin = copy.deepcopy(spec.model)
        graph = spec.graph(twin)
        if {id(p) for p in graph.parameters()} != {id(p) for p in twin.parameters()}:
            raise ParityError(f"{spec.name}: the graph is not built from the copy's parameters")
        if arm == "flowdl fast":
            graph.compile(backend=backend)
        params[arm], models[arm] = _parameters(twin), graph
    return models, params


def check_equal(
    name: str,
    models: dict[str, nn.Module],
    params: dict[str, dict[str, Any]],
    batch: Batch,
    loss_fn: LossFn,
    rtol: float = 1e-4,
) -> tuple[dict[str, float], dict[str, int]]:
    """Outputs and gradients of every arm on `batch`, against ``index``.

    Returns:
        per arm, the largest difference relative to the reference's largest magnitude,
        and the Dynamo graphs its first forward and backward made.

    Raises:
        ParityError: an arm differs by more than `rtol` of the scale, or has a gradient
            where the reference has none (or the other way round).
    """
    x, y = batch
    seen: dict[str, list[Any]] = {}
    made: dict[str, int] = {}
    for arm, model in models.items():
        for p in params[arm].values():
            p.grad = None
        before = _graphs()
        out = model(x)
        loss_fn(out, y).backward()  # type: ignore[no-untyped-call]
        made[arm] = _graphs() - before
        seen[arm] = [out.detach()] + [p.grad for p in params[arm].values()]
        for p in params[arm].values():
            p.grad = None
    names = ["output", *params["index"]]
    want = seen["index"]
    worst: dict[str, float] = {}
    for arm, got in seen.items():
        worst[arm] = 0.0
        for what, a, b in zip(names, got, want, strict=True):
            if a is None and b is None:
                continue
            if a is None or b is None:  # no rows reached it on one side: a zero gradient
                a, b = (b.new_zeros(()) if a is None else a), (a.new_zeros(()) if b is None else b)
            scale = float(b.abs().max()) or 1.0
            diff = float((a - b).abs().max()) / scale
            if not diff <= rtol:
                raise ParityError(
                    f"{name}: the {arm} arm's {what} differs from the hand-written indexing "
                    f"formulation by {diff:.2e} of its scale (tolerance {rtol:g}); the arms "
                    "do not compute the same model"
                )
            worst[arm] = max(worst[arm], diff)
    return worst, made


def compile_module(module: nn.Module, backend: str) -> nn.Module:
    """`torch.compile` of `module` (an ``OptimizedModule``, itself a module)."""
    compiled = torch.compile(module, backend=backend)
    assert isinstance(compiled, nn.Module)
    return compiled


def _counted(run: Callable[[], object], tally: list[int]) -> Callable[[], None]:
    def call() -> None:
        before = _graphs()
        run()
        tally.append(_graphs() - before)

    return call


def run_model(name: str, config: DynamicConfig) -> DynamicResult:
    """Build the arms, check them equal, time them."""
    torch.manual_seed(config.seed)
    spec = DYNAMIC_MODELS[name](config.batch, config.dim)
    spec.model.to(config.device)
    batches = [spec.make_batch(config.device) for _ in range(config.batches)]
    models, params = build_arms(spec, config.backend)
    differences, made = check_equal(name, models, params, batches[0], spec.loss_fn)
    tallies: dict[str, list[int]] = {arm: [] for arm in ARMS}
    runs: dict[str, Callable[[], object]] = {}
    for arm, model in models.items():
        trainable = list(params[arm].values())
        epoch = Arm(model, make_adam(trainable, spec.lr, TUNED), spec.loss_fn, TUNED).epoch
        runs[arm] = _counted(partial(epoch, batches), tallies[arm])
    clock = time.process_time if config.clock == "cpu" else time.perf_counter
    times = interleave(runs, config.rounds, config.warmup, config.device, clock)
    graphs = {
        arm: (made[arm] + sum(tallies[arm][: config.warmup]), sum(tallies[arm][config.warmup :]))
        for arm in ("compiled", "flowdl fast")
    }
    return DynamicResult(
        name, spec.sizes, spec.formulation, spec.compiled, times, graphs, differences
    )


def run_dynamic(
    config: DynamicConfig, command: str, echo: Callable[[str], None] = print
) -> DynamicSuiteResult:
    """Every model of `config`, in order."""
    start = time.perf_counter()
    result = DynamicSuiteResult(config, machine_info(config.device), command)
    for name in config.models:
        done = run_model(name, config)
        result.models.append(done)
        best_f, best_h = done.best(FLOWDL), done.best(HAND)
        r = done.ratio(best_f, best_h)
        echo(
            f"{name:9s} best flowdl ({best_f}) / best hand ({best_h}): "
            f"{r.median:.3f} ± {r.spread:.3f}"
        )
    result.seconds = time.perf_counter() - start
    return result
