"""gated_routing: a soft mixture of eight experts between two linear layers."""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

import flowdl as fl
from flowdl._bench.models.dense import LinearGeluNorm
from flowdl._bench.pair import ModelPair, chain, members, mse, noise_regression, scaled
from flowdl._bench.protocol import Protocol

EXPERTS = 8


class GatedRouting(nn.Module):
    """Lin–GELU, then ``sum_e softmax(router(h))_e · expert_e(h)`` (every expert runs), Lin."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.inp = nn.Linear(dim, dim)
        self.act = nn.GELU()
        self.router = nn.Linear(dim, EXPERTS)
        self.experts = nn.ModuleList(LinearGeluNorm(dim, dim) for _ in range(EXPERTS))
        self.out = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        h = self.act(self.inp(x))
        weights = torch.softmax(self.router(h), dim=-1)  # [B, E]
        outputs = torch.stack([e(h) for e in self.experts], dim=1)  # [B, E, D]
        mixed: Tensor = self.out((weights.unsqueeze(-1) * outputs).sum(dim=1))
        return mixed


def gated_routing(scale: float, protocol: Protocol) -> ModelPair:
    """floDl's gated_routing: batch 256, width 512, 8 experts, softmax router.

    Example:
        >>> from flowdl._bench.protocol import FLODL
        >>> gated_routing(0.02, FLODL).sizes
        {'batch': 5, 'dim': 10, 'experts': 8}
    """
    batch, dim = scaled(256, scale), scaled(512, scale)
    model = GatedRouting(dim)
    twin = copy.deepcopy(model)
    router = fl.SoftmaxRouter(dim, EXPERTS)
    router.proj = twin.router  # the hand-written router's weights
    experts = [chain(e.layers()) for e in members(twin.experts, LinearGeluNorm)]
    graph = fl.Flow(twin.inp).through(twin.act).gate(router, *experts).through(twin.out).build()
    return ModelPair(
        "gated_routing",
        model,
        twin,
        graph,
        noise_regression((batch, dim), (batch, dim)),
        mse,
        {"batch": batch, "dim": dim, "experts": EXPERTS},
        formulation="`.gate(fl.SoftmaxRouter(d, 8), *experts)`, each expert a nested graph",
    )
