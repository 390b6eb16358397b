"""``python -m flowdl demo``: build a small graph and train it on generated data.

The task is goDl's: learn ``[a, b] -> [a, a + b]`` for ``a, b`` uniform in
``[-1, 1]``. The model is a graph with a residual block; training uses plain
PyTorch (a `DataLoader`, Adam, gradient clipping).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import flowdl as fl

PROBE = (0.5, 0.3)
WANT = (0.5, 0.8)
TOLERANCE = 0.15


@dataclass
class DemoResult:
    """What the demo measured.

    Attributes:
        losses: mean training loss of each epoch.
        prediction: the model's output for the probe input ``[0.5, 0.3]``.
        seconds: wall time of the training loop.
    """

    losses: list[float]
    prediction: tuple[float, float]
    seconds: float

    @property
    def learned(self) -> bool:
        """Loss at least halved and the probe within 0.15 of ``[0.5, 0.8]``."""
        close = all(abs(p - w) <= TOLERANCE for p, w in zip(self.prediction, WANT, strict=True))
        return self.losses[-1] < 0.5 * self.losses[0] and close


def build_model() -> fl.Graph:
    """The demo's graph: a residual MLP from 2 to 2 features."""
    return (
        fl.Flow(nn.Linear(2, 16))
        .through(nn.GELU())
        .through(nn.LayerNorm(16))
        .also(nn.Linear(16, 16))
        .through(nn.Linear(16, 2))
        .build()
    )


def make_data(n: int, generator: torch.Generator) -> TensorDataset:
    """`n` samples of ``[a, b] -> [a, a + b]`` with ``a, b ~ U(-1, 1)``."""
    x = torch.rand(n, 2, generator=generator) * 2 - 1
    y = torch.stack([x[:, 0], x[:, 0] + x[:, 1]], dim=1)
    return TensorDataset(x, y)


def run_demo(epochs: int = 50, seed: int = 0, echo: Callable[[str], None] = print) -> DemoResult:
    """Train the demo model and report through `echo`; return what was measured."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = build_model()
    loader = DataLoader(make_data(200, generator), batch_size=20, shuffle=True, generator=generator)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    loss_fn = nn.MSELoss()
    n_params = sum(p.numel() for p in model.parameters())
    echo(f"flowdl {fl.__version__} demo: learn [a, b] -> [a, a + b]")
    echo(f"model ({n_params} parameters):\n{model}")
    losses: list[float] = []
    report_every = max(1, epochs // 10)
    start = time.perf_counter()
    model.train()
    for epoch in range(epochs):
        total, batches = torch.zeros(()), 0
        for x, y in loader:
            loss = loss_fn(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            total += loss.detach()
            batches += 1
        losses.append(total.item() / batches)
        if epoch % report_every == 0 or epoch == epochs - 1:
            echo(f"epoch {epoch + 1:3d}/{epochs}  loss={losses[-1]:.6f}")
    seconds = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        out = model(torch.tensor([PROBE]))[0]
    prediction = (float(out[0]), float(out[1]))
    result = DemoResult(losses, prediction, seconds)
    echo(
        f"eval: input=[{PROBE[0]}, {PROBE[1]}] -> pred=[{prediction[0]:.3f}, {prediction[1]:.3f}] "
        f"(want ~[{WANT[0]}, {WANT[1]}])"
    )
    verdict = "learned the task" if result.learned else "did NOT learn the task"
    echo(f"the model {verdict} in {seconds:.1f}s (loss {losses[0]:.4f} -> {losses[-1]:.4f})")
    return result
