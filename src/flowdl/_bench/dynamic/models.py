"""The five models of the dynamic suite, written by hand (indexing and masks) and as graphs.

Every hand-written model is a `Formulated` module; its graph is built from a deep
copy of it, so both hold the same weights. Sizes: ``dim`` features, ``batch`` rows;
the structure (branches, experts, iterations, heads, steps) is fixed.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

import flowdl as fl
from flowdl._bench.dynamic.parts import (
    DynamicModel,
    Formulated,
    Narrow,
    ResidualTanh,
    ScanDone,
    ScanStep,
    StartScan,
    TakeHidden,
    mlp,
    mse,
)
from flowdl._bench.pair import Batch
from flowdl._graph import Graph

BRANCHES, EXPERTS, TOP_K, MAX_ITER, HEADS, STEPS = 4, 8, 2, 8, 16, 16


def _noise(batch: int, dim: int) -> Callable[[torch.device], Batch]:
    def make(device: torch.device) -> Batch:
        return torch.randn(batch, dim, device=device), torch.randn(batch, dim, device=device)

    return make


class SwitchModel(Formulated):
    """Lin–GELU, then each sample through one of 4 Linear–GELU–Linear branches (argmax), Lin."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.inp, self.act = nn.Linear(dim, dim), nn.GELU()
        self.select = fl.ArgmaxSelector(dim, BRANCHES)
        self.branches = nn.ModuleList(mlp(dim, dim) for _ in range(BRANCHES))
        self.out = nn.Linear(dim, dim)

    def by_index(self, x: Tensor) -> Tensor:
        h = self.act(self.inp(x))
        choice = self.select(h)
        y = torch.zeros_like(h)
        for i, branch in enumerate(self.branches):
            rows = (choice == i).nonzero().squeeze(1)
            if len(rows):
                y = y.index_copy(0, rows, branch(h.index_select(0, rows)))
        out: Tensor = self.out(y)
        return out

    def by_mask(self, x: Tensor) -> Tensor:
        h = self.act(self.inp(x))
        choice = self.select(h)
        every = torch.stack([branch(h) for branch in self.branches], dim=1)  # [B, n, D]
        y = every.gather(1, choice.view(-1, 1, 1).expand(-1, 1, every.shape[-1])).squeeze(1)
        out: Tensor = self.out(y)
        return out


def switch(batch: int, dim: int) -> DynamicModel:
    """Per-sample switch over 4 branches.

    Example:
        >>> m = switch(8, 6)
        >>> m.graph(m.model)(torch.zeros(8, 6)).shape
        torch.Size([8, 6])
    """

    def graph(m: Formulated) -> Graph:
        assert isinstance(m, SwitchModel)
        flow = fl.Flow(m.inp).through(m.act).switch(m.select, *m.branches).through(m.out)
        return flow.build()

    return DynamicModel(
        "switch",
        SwitchModel(dim),
        graph,
        _noise(batch, dim),
        mse,
        {"batch": batch, "dim": dim, "branches": BRANCHES},
        formulation="`.switch(fl.ArgmaxSelector(d, 4), *branches)`",
    )


class MoEModel(Formulated):
    """Lin–GELU, then top-2 of 8 Linear–GELU–Linear experts (`fl.TopKRouter`), Lin."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.inp, self.act = nn.Linear(dim, dim), nn.GELU()
        self.router = fl.TopKRouter(dim, EXPERTS, k=TOP_K)
        self.experts = nn.ModuleList(mlp(dim, dim) for _ in range(EXPERTS))
        self.out = nn.Linear(dim, dim)

    def by_index(self, x: Tensor) -> Tensor:
        h = self.act(self.inp(x))
        w = self.router(h)  # [B, n], k non-zero per row
        y = torch.zeros_like(h)
        for i, expert in enumerate(self.experts):
            rows = w[:, i].nonzero().squeeze(1)
            if len(rows):
                y = y.index_add(0, rows, w[rows, i, None] * expert(h.index_select(0, rows)))
        out: Tensor = self.out(y)
        return out

    def by_mask(self, x: Tensor) -> Tensor:
        h = self.act(self.inp(x))
        w = self.router(h)
        every = torch.stack([expert(h) for expert in self.experts], dim=1)  # [B, n, D]
        out: Tensor = self.out((w.unsqueeze(-1) * every).sum(1))
        return out


def moe(batch: int, dim: int) -> DynamicModel:
    """Top-2 of 8 experts.

    Example:
        >>> m = moe(8, 6)
        >>> m.graph(m.model)(torch.zeros(8, 6)).shape
        torch.Size([8, 6])
    """

    def graph(m: Formulated) -> Graph:
        assert isinstance(m, MoEModel)
        return fl.Flow(m.inp).through(m.act).gate(m.router, *m.experts).through(m.out).build()

    return DynamicModel(
        "moe_top2",
        MoEModel(dim),
        graph,
        _noise(batch, dim),
        mse,
        {"batch": batch, "dim": dim, "experts": EXPERTS, "k": TOP_K},
        formulation="`.gate(fl.TopKRouter(d, 8, k=2), *experts)`",
    )


class HaltingModel(Formulated):
    """Lin, then ``h = h + tanh(Lin(h))`` until a learned halt says stop, per sample (≤ 8), Lin."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.inp = nn.Linear(dim, dim)
        self.body = ResidualTanh(dim)
        self.halt = fl.LearnedHalt(dim)
        with torch.no_grad():  # samples halt after 1 to 8 iterations, about 5 on average
            self.halt.proj.bias.fill_(-0.3)
        self.out = nn.Linear(dim, dim)

    def _running(self, h: Tensor) -> Tensor:
        with torch.no_grad():
            running: Tensor = self.halt(h).reshape(h.shape[0]) <= 0
        return running

    def by_index(self, x: Tensor) -> Tensor:
        h = self.body(self.inp(x))
        active: Tensor | None = None
        for _ in range(1, MAX_ITER):
            running = self._running(h)
            active = running if active is None else active & running
            if not bool(active.any()):
                break
            rows = active.nonzero().squeeze(1)
            h = h.index_copy(0, rows, self.body(h.index_select(0, rows)))
        out: Tensor = self.out(h)
        return out

    def by_mask(self, x: Tensor) -> Tensor:
        h = self.body(self.inp(x))
        active = torch.ones(h.shape[0], 1, dtype=torch.bool, device=h.device)
        for _ in range(1, MAX_ITER):
            active = active & self._running(h).unsqueeze(1)
            h = torch.where(active, self.body(h), h)
        out: Tensor = self.out(h)
        return out


def halting(batch: int, dim: int) -> DynamicModel:
    """Per-sample halting, at most 8 iterations.

    Example:
        >>> m = halting(8, 6)
        >>> m.graph(m.model)(torch.zeros(8, 6)).shape
        torch.Size([8, 6])
    """

    def graph(m: Formulated) -> Graph:
        assert isinstance(m, HaltingModel)
        flow = fl.Flow(m.inp).loop(m.body).until(m.halt, max_iter=MAX_ITER).through(m.out)
        return flow.build()

    return DynamicModel(
        "halting",
        HaltingModel(dim),
        graph,
        _noise(batch, dim),
        mse,
        {"batch": batch, "dim": dim, "max_iter": MAX_ITER},
        formulation="`.loop(body).until(fl.LearnedHalt(d), max_iter=8)`",
    )


class HeadsModel(Formulated):
    """Lin–GELU, split into 16 heads of ``d / 16`` each through its own Lin–GELU–Lin, cat, Lin."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.width = dim // HEADS
        self.inp, self.act = nn.Linear(dim, dim), nn.GELU()
        self.heads = nn.ModuleList(mlp(self.width, self.width) for _ in range(HEADS))
        self.out = nn.Linear(dim, dim)

    def by_index(self, x: Tensor) -> Tensor:
        h = self.act(self.inp(x))
        parts = h.split(self.width, dim=-1)
        out: Tensor = self.out(
            torch.cat([f(p) for f, p in zip(self.heads, parts, strict=True)], dim=-1)
        )
        return out

    def by_mask(self, x: Tensor) -> Tensor:
        """One dense layer per stage whose weight is block-diagonal (the heads' weights)."""
        h = self.act(self.inp(x))
        for stage in (0, 2):
            layers = [_linear(head.get_submodule(str(stage))) for head in self.heads]
            weight = torch.block_diag(*[layer.weight for layer in layers])  # type: ignore[no-untyped-call]
            h = nn.functional.linear(h, weight, torch.cat([layer.bias for layer in layers]))
            if stage == 0:
                h = nn.functional.gelu(h)
        out: Tensor = self.out(h)
        return out


def _linear(module: nn.Module) -> nn.Linear:
    assert isinstance(module, nn.Linear)
    return module


def heads(batch: int, dim: int) -> DynamicModel:
    """Many small heads, split and merged.

    Example:
        >>> m = heads(8, 32)
        >>> m.graph(m.model)(torch.zeros(8, 32)).shape
        torch.Size([8, 32])
    """

    def graph(m: Formulated) -> Graph:
        assert isinstance(m, HeadsModel)
        w = m.width
        branches = [fl.Flow(Narrow(i * w, w)).through(f) for i, f in enumerate(m.heads)]
        flow = fl.Flow(m.inp).through(m.act).split(*branches).merge(fl.Cat(-1)).through(m.out)
        return flow.build()

    return DynamicModel(
        "heads",
        HeadsModel(dim),
        graph,
        _noise(batch, dim),
        mse,
        {"batch": batch, "dim": dim, "heads": HEADS},
        compiled="index",
        formulation="`.split(*heads).merge(fl.Cat(-1))`, each head `Narrow` then Lin–GELU–Lin",
    )


class ScanModel(Formulated):
    """An RNN cell over sequences of 1 to 16 steps (the length in the last channel), Lin."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.cell = nn.RNNCell(dim, dim)
        self.out = nn.Linear(dim, dim)

    def by_index(self, x: Tensor) -> Tensor:
        lengths = x[:, 0, -1]
        h = x.new_zeros(x.shape[0], self.cell.hidden_size)
        for t in range(x.shape[1]):
            rows = (lengths > t).nonzero().squeeze(1)
            if not len(rows):
                break
            step = self.cell(x[rows, t, :-1], h.index_select(0, rows))
            h = h.index_copy(0, rows, step)
        out: Tensor = self.out(h)
        return out

    def by_mask(self, x: Tensor) -> Tensor:
        lengths = x[:, 0, -1:]
        h = x.new_zeros(x.shape[0], self.cell.hidden_size)
        for t in range(x.shape[1]):
            h = torch.where(lengths > t, self.cell(x[:, t, :-1], h), h)
        out: Tensor = self.out(h)
        return out


def scan(batch: int, dim: int) -> DynamicModel:
    """An RNN cell over sequences of varying length.

    Example:
        >>> m = scan(8, 6)
        >>> x, _ = m.make_batch(torch.device("cpu"))
        >>> m.graph(m.model)(x).shape
        torch.Size([8, 6])
    """

    def graph(m: Formulated) -> Graph:
        assert isinstance(m, ScanModel)
        hidden = m.cell.hidden_size
        flow = (
            fl.Flow(nn.Identity())
            .tag("seq", shared=True)
            .through(StartScan(hidden))
            .loop(ScanStep(m.cell))
            .until(ScanDone(), max_iter=STEPS)
            .using("seq")
            .through(TakeHidden(hidden))
            .through(m.out)
        )
        return flow.build()

    def make(device: torch.device) -> Batch:
        x = torch.randn(batch, STEPS, dim + 1, device=device)
        x[:, :, -1] = torch.randint(1, STEPS + 1, (batch, 1), device=device).float()
        return x, torch.randn(batch, dim, device=device)

    return DynamicModel(
        "scan",
        ScanModel(dim),
        graph,
        make,
        mse,
        {"batch": batch, "dim": dim, "steps": STEPS},
        formulation="`.loop(step).until(done, max_iter=16).using('seq')` on (h, t, length, row), "
        "the sequence tagged shared",
    )


DYNAMIC_MODELS: dict[str, Callable[[int, int], DynamicModel]] = {
    "switch": switch,
    "moe_top2": moe,
    "halting": halting,
    "heads": heads,
    "scan": scan,
}
"""Name -> builder ``(batch, dim) -> DynamicModel``."""
