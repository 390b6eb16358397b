"""mlp and residual_tower: Linear–GELU–LayerNorm stacks, plain and residual."""

from __future__ import annotations

import copy

from torch import Tensor, nn

import flowdl as fl
from flowdl._bench.pair import ModelPair, chain, members, mse, noise_regression, scaled
from flowdl._bench.protocol import Protocol


class LinearGeluNorm(nn.Module):
    """``LN(GELU(Lin(x)))``: the unit of the dense models."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.linear = nn.Linear(n_in, n_out)
        self.act = nn.GELU()
        self.norm = nn.LayerNorm(n_out)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.norm(self.act(self.linear(x)))
        return out

    def layers(self) -> list[nn.Module]:
        """Its three layers in order, to chain in a flow."""
        return [self.linear, self.act, self.norm]


class MLP(nn.Module):
    """Lin(n, h)–GELU–LN(h), then ``blocks - 1`` × [Lin(h, h)–GELU–LN(h)], then Lin(h, n)."""

    def __init__(self, n_io: int, hidden: int, blocks: int = 4) -> None:
        super().__init__()
        widths = [n_io] + [hidden] * (blocks - 1)
        self.blocks = nn.ModuleList(LinearGeluNorm(w, hidden) for w in widths)
        self.out = nn.Linear(hidden, n_io)

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        out: Tensor = self.out(x)
        return out


def mlp(scale: float, protocol: Protocol) -> ModelPair:
    """floDl's mlp: batch 256, 1024 → 2048 ×4 → 1024, no residuals.

    Example:
        >>> from flowdl._bench.protocol import FLODL
        >>> mlp(0.01, FLODL).sizes
        {'batch': 3, 'io': 10, 'hidden': 20}
    """
    batch, n_io, hidden = scaled(256, scale), scaled(1024, scale), scaled(2048, scale)
    model = MLP(n_io, hidden)
    twin = copy.deepcopy(model)
    blocks = members(twin.blocks, LinearGeluNorm)
    layers = [layer for block in blocks for layer in block.layers()]
    return ModelPair(
        "mlp",
        model,
        twin,
        chain([*layers, twin.out]).build(),
        noise_regression((batch, n_io), (batch, n_io)),
        mse,
        {"batch": batch, "io": n_io, "hidden": hidden},
        formulation="a chain: `fl.Flow` and 12 `.through`",
    )


class ResidualBlock(nn.Module):
    """``x + LN(GELU(Lin(x)))``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.update = LinearGeluNorm(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        update: Tensor = self.update(x)
        return x + update


class ResidualTower(nn.Module):
    """Lin(d, d), ``blocks`` × `ResidualBlock`, Lin(d, d)."""

    def __init__(self, dim: int, blocks: int = 12) -> None:
        super().__init__()
        self.inp = nn.Linear(dim, dim)
        self.blocks = nn.ModuleList(ResidualBlock(dim) for _ in range(blocks))
        self.out = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        x = self.inp(x)
        for block in self.blocks:
            x = block(x)
        out: Tensor = self.out(x)
        return out


def residual_tower(scale: float, protocol: Protocol) -> ModelPair:
    """floDl's residual_tower: batch 256, width 1024, 12 residual blocks.

    Example:
        >>> from flowdl._bench.protocol import FLODL
        >>> pair = residual_tower(0.01, FLODL)
        >>> pair.sizes, len(pair.graph.levels)
        ({'batch': 3, 'dim': 10}, 27)
    """
    batch, dim = scaled(256, scale), scaled(1024, scale)
    model = ResidualTower(dim)
    twin = copy.deepcopy(model)
    flow = fl.Flow(twin.inp)
    for block in members(twin.blocks, ResidualBlock):
        flow = flow.also(chain(block.update.layers()))
    return ModelPair(
        "residual_tower",
        model,
        twin,
        flow.through(twin.out).build(),
        noise_regression((batch, dim), (batch, dim)),
        mse,
        {"batch": batch, "dim": dim},
        formulation="`.also(block)` ×12, each block a nested graph Lin–GELU–LN",
    )
