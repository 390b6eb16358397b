"""Run the suite: every model under every protocol, then the operations and the overhead.

`run_suite` is what ``python -m flowdl bench`` calls; it returns a `SuiteResult`
that `flowdl._bench.report` writes out.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial

import torch

from flowdl._bench.models import MODELS
from flowdl._bench.ops import OpResult, measure_ops
from flowdl._bench.overhead import OverheadResult, measure_overhead
from flowdl._bench.pair import ModelPair
from flowdl._bench.protocol import Arm, Protocol, adam_kind, interleave, make_adam
from flowdl._bench.stats import Summary, paired_ratio
from flowdl._version import __version__

CPU_SCALE = 0.25
"""Default scale on the CPU: all ten models, both protocols, in minutes on two cores."""

CPU_BATCHES = 20
"""Default batches per epoch on the CPU (floDl's 50 on a GPU)."""


@dataclass(frozen=True)
class SuiteConfig:
    """What to run.

    Attributes:
        models: model names, in the order to run them.
        protocols: the step protocols to time each model under.
        scale: size factor (1.0: floDl's sizes).
        batches: batches per epoch (the unit of time).
        warmup: untimed epochs per arm before the rounds.
        rounds: timed epochs per arm, interleaved.
        device: where everything runs.
        ops: also time go-torch's operations.
        overhead: also time the executor's overhead per node.
        seed: seed of the weights and the batches.
    """

    models: tuple[str, ...]
    protocols: tuple[Protocol, ...]
    scale: float
    batches: int
    warmup: int
    rounds: int
    device: torch.device
    ops: bool = True
    overhead: bool = True
    seed: int = 0


@dataclass(frozen=True)
class ModelResult:
    """One model under one protocol: its epoch times on each side, round by round.

    Attributes:
        name: the model.
        protocol: the protocol's key.
        sizes: the sizes at this scale.
        parameters: parameter count (the same on both sides).
        loss: the loss both sides computed on the first batch, before training.
        adam: the Adam implementation both sides used.
        formulation: how the graph is written.
        pytorch: seconds per epoch of the hand-written model, per round.
        flowdl: seconds per epoch of the graph, per round.
    """

    name: str
    protocol: str
    sizes: dict[str, int]
    parameters: int
    loss: float
    adam: str
    formulation: str
    pytorch: list[float]
    flowdl: list[float]

    @property
    def pytorch_summary(self) -> Summary:
        return Summary.of(self.pytorch)

    @property
    def flowdl_summary(self) -> Summary:
        return Summary.of(self.flowdl)

    @property
    def ratio(self) -> Summary:
        """flowdl ÷ PyTorch, round by round."""
        return paired_ratio(self.flowdl, self.pytorch)


@dataclass
class SuiteResult:
    """Everything a run measured, and where and how."""

    config: SuiteConfig
    machine: dict[str, str]
    command: str
    models: list[ModelResult] = field(default_factory=list)
    ops: list[OpResult] = field(default_factory=list)
    overhead: list[OverheadResult] = field(default_factory=list)
    seconds: float = 0.0
    """Wall time of the whole run."""


def machine_info(device: torch.device) -> dict[str, str]:
    """The machine, the software and the date, for the report.

    Example:
        >>> sorted(machine_info(torch.device("cpu")))[:5]
        ['cpu', 'cpu cores', 'date', 'device', 'flowdl']
    """
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cpu cores": str(os.cpu_count()),
        "torch threads": str(torch.get_num_threads()),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "flowdl": __version__,
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = str(torch.version.cuda)
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@contextlib.contextmanager
def _cudnn_benchmark(enabled: bool) -> Iterator[None]:
    """cuDNN autotuning on (floDl's default) or off (its RNNs) for the block."""
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


def run_model(name: str, protocol: Protocol, config: SuiteConfig) -> ModelResult:
    """Build the pair, check the two losses agree, then time both sides' training epochs.

    Raises:
        ParityError: the two formulations disagree.
    """
    torch.manual_seed(config.seed)
    device = config.device
    pair: ModelPair = MODELS[name](config.scale, protocol).to(device)
    batches = [pair.make_batch(device) for _ in range(config.batches)]
    loss = pair.check_same_loss(batches[0])
    arms = {
        side: Arm(model, make_adam(model.parameters(), pair.lr, protocol), pair.loss_fn, protocol)
        for side, model in (("pytorch", pair.torch_model), ("flowdl", pair.graph))
    }
    with _cudnn_benchmark(pair.cudnn_benchmark):
        times = interleave(
            {side: partial(arm.epoch, batches) for side, arm in arms.items()},
            config.rounds,
            config.warmup,
            device,
        )
    return ModelResult(
        name,
        protocol.key,
        pair.sizes,
        pair.parameter_count(),
        loss,
        adam_kind(arms["pytorch"].optimizer),
        pair.formulation,
        times["pytorch"],
        times["flowdl"],
    )


def run_suite(
    config: SuiteConfig, command: str, echo: Callable[[str], None] = print
) -> SuiteResult:
    """Run the models, then the operations and the overhead, as `config` says.

    Raises:
        ParityError: a model's two formulations disagree (nothing is timed after it).
    """
    start = time.perf_counter()
    result = SuiteResult(config, machine_info(config.device), command)
    for name in config.models:
        for protocol in config.protocols:
            done = run_model(name, protocol, config)
            result.models.append(done)
            echo(_progress_line(done))
    if config.ops:
        echo("go-torch operations ...")
        result.ops = measure_ops(config.device, config.rounds)
    if config.overhead:
        echo("executor overhead per node ...")
        result.overhead = measure_overhead(rounds=config.rounds, device=config.device)
    result.seconds = time.perf_counter() - start
    return result


def _progress_line(r: ModelResult) -> str:
    torch_ms, flowdl_ms, ratio = r.pytorch_summary, r.flowdl_summary, r.ratio
    return (
        f"{r.name:17s} {r.protocol:6s} PyTorch {torch_ms.median * 1e3:9.1f} ms  "
        f"flowdl {flowdl_ms.median * 1e3:9.1f} ms  ratio {ratio.median:.3f} ± {ratio.spread:.3f}"
    )


def parse_models(text: str) -> tuple[str, ...]:
    """Comma-separated model names (``all`` for every model), checked.

    Raises:
        ValueError: an unknown name (the message lists the known ones).

    Example:
        >>> parse_models("mlp, gru_seq")
        ('mlp', 'gru_seq')
        >>> len(parse_models("all"))
        10
    """
    if text.strip() == "all":
        return tuple(MODELS)
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in MODELS]
    if unknown or not names:
        raise ValueError(
            f"unknown model {', '.join(map(repr, unknown)) or '(none given)'}; "
            f"the models are: {', '.join(MODELS)} (or 'all')"
        )
    return names
