"""``python -m flowdl demo``: train a small dynamic graph end to end and keep everything.

The task is generated, so nothing is downloaded: learn ``[a, b] -> [a + b, a * b]`` for
``a, b`` uniform in ``[-1, 1]``. The model is a graph with structure: an embedding, a
soft gate over three expert graphs, a refinement loop run twice, and a head. Training
is plain PyTorch (Adam, a shuffled batch order); flowdl adds what PyTorch has no
answer for:

- the loss of every batch is recorded on the graph (``g.record``) and flushed once per
  epoch into a trend (``g.flush``), and the trend decides: a stalled validation loss
  halves the learning rate, a converged one stops training;
- it runs on one CPU thread unless told otherwise (``--threads``): the model is so
  small that more threads only add synchronisation, and on a busy machine they wait
  for each other's cores;
- `fl.Monitor` prints one line per epoch (and serves the live dashboard with
  ``--dashboard``);
- at the end the demo writes into the output folder the drawing of the model (DOT, and
  SVG when Graphviz is installed, plain and profiled), the training curves (an offline
  HTML page), the training log, the monitor's CSV and frozen dashboard, and a
  checkpoint, which it reloads into a fresh model to check it gives the same result.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import torch
from torch import Tensor, nn

import flowdl as fl

PROBE = (0.5, 0.3)
WANT = (0.8, 0.15)
TOLERANCE = 0.1
"""The probe ``[0.5, 0.3]`` must come out within 0.1 of ``[0.8, 0.15]``."""

TRAIN_SAMPLES = 1000
VALIDATION_SAMPLES = 200
BATCH = 50
WIDTH = 32
STALL_WINDOW = 5
STALL_SLOPE = 0.03
"""Stalled: over the last 5 epochs the validation loss moves by under 3 % of its mean per
epoch (``trend.stalled(5, 0.03, relative=True)``)."""
CONVERGED_SPREAD = 0.05
"""Converged: over the last 5 epochs its standard deviation is under 5 % of its mean
(``trend.converged(5, 0.05, relative=True)``)."""
THREADS = 1
"""The demo's CPU threads by default: its model is tiny (see the module docstring)."""


@dataclass
class DemoResult:
    """What the demo measured and wrote.

    Attributes:
        losses: mean training loss of each epoch.
        val_losses: validation loss after each epoch.
        lr_changes: ``(epoch, new learning rate)`` for each decision to lower it.
        stopped_at: the epoch at which the trend said "converged", or ``None``.
        prediction: the model's output for the probe input ``[0.5, 0.3]``.
        seconds: wall time of the training loop.
        files: what was written, by description.
    """

    losses: list[float]
    val_losses: list[float]
    lr_changes: list[tuple[int, float]]
    stopped_at: int | None
    prediction: tuple[float, float]
    seconds: float
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def learned(self) -> bool:
        """The loss fell at least tenfold and the probe is within 0.1 of ``[0.8, 0.15]``."""
        close = all(abs(p - w) <= TOLERANCE for p, w in zip(self.prediction, WANT, strict=True))
        return self.losses[-1] < 0.1 * self.losses[0] and close


def build_model() -> fl.Graph:
    """The demo's graph: embedding, a gate over three experts, a refinement loop, a head."""

    def expert() -> fl.Graph:
        return fl.Flow(nn.Linear(WIDTH, WIDTH)).through(nn.GELU()).build()

    refine = (
        fl.Flow(nn.Identity())
        .also(fl.Flow(nn.Linear(WIDTH, WIDTH)).through(nn.GELU()).through(nn.LayerNorm(WIDTH)))
        .label("refine")
        .build()
    )
    return (
        fl.Flow(nn.Linear(2, WIDTH))
        .through(nn.GELU())
        .tag("embedding")
        .gate(fl.SoftmaxRouter(WIDTH, 3), expert(), expert(), expert())
        .tag("experts")
        .loop(refine)
        .for_(2)
        .tag("refined")
        .through(nn.Linear(WIDTH, 2))
        .build()
    )


def make_data(n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """`n` samples of ``[a, b] -> [a + b, a * b]`` with ``a, b ~ U(-1, 1)``."""
    x = torch.rand(n, 2, generator=generator) * 2 - 1
    return x, torch.stack([x[:, 0] + x[:, 1], x[:, 0] * x[:, 1]], dim=1)


def validation_loss(model: nn.Module, x: Tensor, y: Tensor) -> float:
    """Mean squared error on `(x, y)` in eval mode, without autograd."""
    model.eval()
    with torch.no_grad():
        loss = float(nn.functional.mse_loss(model(x), y))
    model.train()
    return loss


def run_demo(
    epochs: int = 40,
    seed: int = 0,
    out: Path | None = None,
    dashboard: bool = False,
    stream: TextIO | None = None,
    linger: Callable[[str], object] | None = None,
    threads: int | None = THREADS,
) -> DemoResult:
    """Train the demo model, write its outputs into `out` (if given); report on `stream`.

    With `dashboard`, the monitor serves the live dashboard on 127.0.0.1 (it prints the
    URL) and, once training is over, `linger(url)` is called before the server shuts
    down: the command line waits there for Enter, so the finished run can be looked at.
    The run uses `threads` CPU threads (``torch.set_num_threads``; ``None`` keeps
    PyTorch's count) and restores the previous count when it ends.
    """
    stream = sys.stdout if stream is None else stream
    previous = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise ValueError(f"the demo needs at least one thread; received threads={threads}")
        torch.set_num_threads(threads)
    try:
        return _run(epochs, seed, out, dashboard, stream, linger, threads)
    finally:
        torch.set_num_threads(previous)


def _run(
    epochs: int,
    seed: int,
    out: Path | None,
    dashboard: bool,
    stream: TextIO,
    linger: Callable[[str], object] | None,
    threads: int | None,
) -> DemoResult:
    """`run_demo` with the thread count set."""

    def say(text: str) -> None:
        print(text, file=stream, flush=True)

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = build_model()
    x_train, y_train = make_data(TRAIN_SAMPLES, generator)
    x_val, y_val = make_data(VALIDATION_SAMPLES, generator)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    n_params = sum(p.numel() for p in model.parameters())
    say(f"flowdl {fl.__version__} demo: learn [a, b] -> [a + b, a * b]")
    say(f"model ({n_params:,} parameters):\n{model}")
    count = torch.get_num_threads()
    why = (
        "PyTorch's default; --threads N to change"
        if threads is None
        else "a model this small runs fastest on few threads; --threads N to change"
        if threads == THREADS
        else "as asked"
    )
    say(f"CPU threads: {count} ({why})")

    monitor = fl.Monitor(epochs, title="flowdl demo", output=stream, color=False)
    losses: list[float] = []
    val_losses: list[float] = []
    lr_changes: list[tuple[int, float]] = []
    stopped_at: int | None = None
    since_change = 0
    start = time.perf_counter()
    with monitor:
        url = None
        monitor.watch(model)  # the live dashboard and the saved copy show the model
        if dashboard:
            url = monitor.serve()  # the monitor prints the URL
        for epoch in range(1, epochs + 1):
            order = torch.randperm(TRAIN_SAMPLES, generator=generator)
            for first in range(0, TRAIN_SAMPLES, BATCH):
                batch = order[first : first + BATCH]
                loss = nn.functional.mse_loss(model(x_train[batch]), y_train[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
                model.record("loss", loss.detach())  # stays on the device until the flush
            model.record("val_loss", validation_loss(model, x_val, y_val))
            model.flush()
            losses.append(model.trend("loss").latest)
            val_losses.append(model.trend("val_loss").latest)
            lr = optimizer.param_groups[0]["lr"]
            monitor.log(epoch, model, {"lr": lr})
            trend = model.trend("val_loss")
            since_change += 1
            if since_change < STALL_WINDOW:  # judge a learning rate on its own epochs only
                continue
            if trend.converged(STALL_WINDOW, CONVERGED_SPREAD, relative=True):
                stopped_at = epoch
                model.mark("val_loss converged: stop")  # drawn on the curves page
                say(f"epoch {epoch}: the validation loss converged; stopping")
                break
            if trend.stalled(STALL_WINDOW, STALL_SLOPE, relative=True):
                for group in optimizer.param_groups:
                    group["lr"] = lr / 2
                lr_changes.append((epoch, lr / 2))
                since_change = 0
                model.mark(f"val_loss stalled: lr -> {lr / 2:g}")
                say(f"epoch {epoch}: the validation loss stalled; learning rate -> {lr / 2:g}")
        seconds = time.perf_counter() - start
        if url is not None and linger is not None:
            linger(url)

    model.eval()
    with torch.no_grad():
        probe = model(torch.tensor([PROBE]))[0]
    prediction = (float(probe[0]), float(probe[1]))
    result = DemoResult(losses, val_losses, lr_changes, stopped_at, prediction, seconds)
    say(
        f"eval: input=[{PROBE[0]}, {PROBE[1]}] -> pred=[{prediction[0]:.3f}, "
        f"{prediction[1]:.3f}] (want ~[{WANT[0]}, {WANT[1]}])"
    )
    verdict = "learned the task" if result.learned else "did NOT learn the task"
    say(f"the model {verdict} in {seconds:.1f}s (loss {losses[0]:.4f} -> {losses[-1]:.2e})")
    if out is not None:
        result.files = write_outputs(out, model, optimizer, monitor, (x_val, y_val), len(losses))
        say(f"wrote into {out}/:")
        width = max(len(path.name) for path in result.files.values())
        for what, path in result.files.items():
            say(f"  {path.name:<{width}}  {what}")
    return result


def write_outputs(
    out: Path,
    model: fl.Graph,
    optimizer: torch.optim.Optimizer,
    monitor: fl.Monitor,
    validation: tuple[Tensor, Tensor],
    epochs_run: int,
) -> dict[str, Path]:
    """Write the drawing, curves, log, CSV, dashboard and checkpoint; check the checkpoint."""
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}

    def written(what: str, path: Path) -> None:
        files[what] = path

    dot_file = out / "model.dot"
    dot_file.write_text(model.dot())
    written("the model's drawing as Graphviz DOT text", dot_file)
    x_val, y_val = validation
    model.enable_profiling()
    for _ in range(10):  # the heat map draws the median of the last 10 profiled forwards
        validation_loss(model, x_val, y_val)
    monitor.watch(model, profile=True)  # the saved dashboard: node times and shapes
    if shutil.which("dot") is None:
        files["(no SVG drawings: Graphviz is not installed; apt-get install graphviz)"] = dot_file
    else:
        model.svg(out / "model.svg")
        written("the model drawn (SVG)", out / "model.svg")
        model.svg(out / "model-profile.svg", profile=True)
        written(
            "the model as a heat map of node times, median of 10 forwards (SVG)",
            out / "model-profile.svg",
        )
    model.disable_profiling()
    written("the training curves (offline HTML page)", model.plot_html(out / "curves.html"))
    written("the training log, with epoch times", model.write_log(out / "training.log", epochs_run))
    written("every epoch's metrics and resources (CSV)", monitor.export_csv(out / "metrics.csv"))
    written(
        "a frozen copy of the dashboard (offline HTML)", monitor.save_html(out / "dashboard.html")
    )
    checkpoint = out / "model.safetensors"
    fl.save_checkpoint(checkpoint, model, optimizer, epoch=epochs_run)
    written("a checkpoint of the model and its optimizer (safetensors)", checkpoint)
    fresh = build_model()
    report = fl.load_checkpoint(checkpoint, fresh, torch.optim.Adam(fresh.parameters()))
    if not report.complete or validation_loss(fresh, x_val, y_val) != validation_loss(
        model, x_val, y_val
    ):
        raise RuntimeError(f"the checkpoint {checkpoint} did not reload to the same model")
    return files
