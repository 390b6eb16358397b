"""The timing protocol: training epochs of two arms, warmed up, in interleaved rounds.

After floDl's (see ``docs/benchmark.md``): every arm trains on the same pre-generated
batches; the unit of time is one epoch over them (forward, loss, ``zero_grad``,
backward, Adam step per batch), ending with a device synchronisation. Each arm is
warmed up, then the arms alternate, one epoch each per round, in an order that flips
every round (A B, B A, A B, ...), all in one process.

Two settings of the step (`Protocol`): floDl's own (plain Adam, ``loss.item()`` every
step, attention computing its weights) and a tuned eager one (fused Adam where the
device has it, one host sync per epoch, ``need_weights=False``).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from flowdl._bench.pair import Batch, LossFn


@dataclass(frozen=True)
class Protocol:
    """How one training step is run.

    Attributes:
        key: short name (``"flodl"``, ``"tuned"``).
        title: name in the report.
        fused_adam: use ``torch.optim.Adam(fused=True)`` where the device supports it.
        need_weights: what ``nn.MultiheadAttention`` is asked for (the transformer).
        sync_every_step: call ``loss.item()`` after every step (a host sync), as floDl
            does; otherwise losses are summed on the device and read once per epoch.
    """

    key: str
    title: str
    fused_adam: bool
    need_weights: bool
    sync_every_step: bool


FLODL = Protocol(
    "flodl", "floDl's settings", fused_adam=False, need_weights=True, sync_every_step=True
)
TUNED = Protocol("tuned", "tuned eager", fused_adam=True, need_weights=False, sync_every_step=False)
PROTOCOLS = {p.key: p for p in (FLODL, TUNED)}


def make_adam(params: Iterable[nn.Parameter], lr: float, protocol: Protocol) -> torch.optim.Adam:
    """Adam(lr, betas (0.9, 0.999), eps 1e-8): fused if the protocol asks and the device can.

    Example:
        >>> opt = make_adam(nn.Linear(2, 2).parameters(), 1e-3, TUNED)
        >>> opt.defaults["lr"]
        0.001
    """
    params = list(params)
    if protocol.fused_adam:
        try:
            return torch.optim.Adam(params, lr=lr, fused=True)
        except RuntimeError:  # this device has no fused kernel: PyTorch's default then
            pass
    return torch.optim.Adam(params, lr=lr)


def adam_kind(opt: torch.optim.Optimizer) -> str:
    """``"fused"``, ``"foreach"`` or ``"for-loop"``: the Adam implementation in use.

    Example:
        >>> adam_kind(make_adam(nn.Linear(2, 2).parameters(), 1e-3, FLODL))
        'for-loop'
    """
    group = opt.param_groups[0]
    if group.get("fused"):
        return "fused"
    if group.get("foreach"):
        return "foreach"
    if group.get("foreach") is None and any(p.is_cuda for p in group["params"]):
        return "foreach"  # PyTorch's default on CUDA
    return "for-loop"


@dataclass
class Arm:
    """One side of a comparison: a model, its optimizer and the step protocol."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    loss_fn: LossFn
    protocol: Protocol

    def epoch(self, batches: Sequence[Batch]) -> float:
        """Train one epoch over `batches`; return the summed loss."""
        model, opt, loss_fn = self.model, self.optimizer, self.loss_fn
        if self.protocol.sync_every_step:
            total = 0.0
            for x, y in batches:
                loss = loss_fn(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                opt.step()
                total += loss.item()
            return total
        summed: Tensor | None = None
        for x, y in batches:
            loss = loss_fn(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            summed = loss.detach() if summed is None else summed + loss.detach()
        return 0.0 if summed is None else summed.item()


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_epoch(
    run: Callable[[], object], device: torch.device, clock: Callable[[], float] = time.perf_counter
) -> float:
    """Seconds for `run()` and the device work it queued, on `clock` (wall time by default;
    ``time.process_time``, the process's CPU time, for one-thread CPU runs on a busy machine)."""
    gc.collect()
    synchronize(device)
    start = clock()
    run()
    synchronize(device)
    return clock() - start


def repeated(run: Callable[[], object], times: int) -> Callable[[], None]:
    """A callable that calls `run` `times` times: one timed block of short steps.

    Example:
        >>> calls = []
        >>> repeated(lambda: calls.append(1), 3)()
        >>> len(calls)
        3
    """

    def block() -> None:
        for _ in range(times):
            run()

    return block


def interleave(
    arms: dict[str, Callable[[], object]],
    rounds: int,
    warmup: int,
    device: torch.device,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, list[float]]:
    """Time the arms' callables: `warmup` untimed calls each, then `rounds` interleaved rounds.

    Round ``r`` runs the arms in their order when ``r`` is even, reversed when odd.

    Returns:
        the seconds of each call, per arm, round by round.

    Example:
        >>> calls = []
        >>> times = interleave({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
        ...                    rounds=3, warmup=1, device=torch.device("cpu"))
        >>> "".join(calls), [len(t) for t in times.values()]
        ('ababbaab', [3, 3])
    """
    for _ in range(warmup):
        for run in arms.values():
            run()
    synchronize(device)
    times: dict[str, list[float]] = {name: [] for name in arms}
    names = list(arms)
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            times[name].append(time_epoch(arms[name], device, clock))
    return times
