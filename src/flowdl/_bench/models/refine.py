"""iterative_refine and feedback_fixed: one shared residual block applied n times."""

from __future__ import annotations

import copy

from torch import Tensor, nn

import flowdl as fl
from flowdl._bench.models.dense import ResidualBlock
from flowdl._bench.pair import ModelPair, chain, mse, noise_regression, scaled
from flowdl._bench.protocol import Protocol


class IterativeRefine(nn.Module):
    """Lin–GELU–LN, then one `ResidualBlock` applied `steps` times (tied weights), Lin."""

    def __init__(self, dim: int, steps: int) -> None:
        super().__init__()
        self.inp = nn.Linear(dim, dim)
        self.act = nn.GELU()
        self.norm = nn.LayerNorm(dim)
        self.block = ResidualBlock(dim)
        self.out = nn.Linear(dim, dim)
        self.steps = steps

    def forward(self, x: Tensor) -> Tensor:
        x = self.norm(self.act(self.inp(x)))
        for _ in range(self.steps):
            x = self.block(x)
        out: Tensor = self.out(x)
        return out


def _refine_pair(name: str, batch: int, dim: int, steps: int) -> ModelPair:
    model = IterativeRefine(dim, steps)
    twin = copy.deepcopy(model)
    body = fl.Flow(nn.Identity()).also(chain(twin.block.update.layers()))
    graph = (
        fl.Flow(twin.inp)
        .through(twin.act)
        .through(twin.norm)
        .loop(body)
        .for_(steps)
        .through(twin.out)
        .build()
    )
    return ModelPair(
        name,
        model,
        twin,
        graph,
        noise_regression((batch, dim), (batch, dim)),
        mse,
        {"batch": batch, "dim": dim, "iterations": steps},
        formulation=f"`.loop(block).for_({steps})`, the block a graph "
        "`fl.Flow(nn.Identity()).also(Lin–GELU–LN)`",
    )


def iterative_refine(scale: float, protocol: Protocol) -> ModelPair:
    """floDl's iterative_refine: batch 256, width 1024, the shared block applied 8 times.

    Example:
        >>> from flowdl._bench.protocol import FLODL
        >>> iterative_refine(0.01, FLODL).sizes
        {'batch': 3, 'dim': 10, 'iterations': 8}
    """
    return _refine_pair("iterative_refine", scaled(256, scale), scaled(1024, scale), 8)


def feedback_fixed(scale: float, protocol: Protocol) -> ModelPair:
    """floDl's feedback_fixed: batch 128, width 512, the shared block applied 10 times.

    Example:
        >>> from flowdl._bench.protocol import FLODL
        >>> feedback_fixed(0.02, FLODL).sizes
        {'batch': 3, 'dim': 10, 'iterations': 10}
    """
    return _refine_pair("feedback_fixed", scaled(128, scale), scaled(512, scale), 10)
