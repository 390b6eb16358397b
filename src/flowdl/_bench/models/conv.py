"""convnet and conv_autoenc: convolution stacks with batch norm."""

from __future__ import annotations

import copy
import itertools

import torch
from torch import Tensor, nn

import flowdl as fl
from flowdl._bench.pair import Batch, ModelPair, chain, mse, noise_regression, scaled
from flowdl._bench.protocol import Protocol


class ConvNet(nn.Module):
    """Five Conv3×3–BN–ReLU (the first four max-pooled), average pool, Lin(c, classes)."""

    def __init__(self, widths: list[int], classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for n_in, n_out in itertools.pairwise(widths):
            conv = nn.Conv2d(n_in, n_out, 3, padding=1)
            layers += [conv, nn.BatchNorm2d(n_out), nn.ReLU(), nn.MaxPool2d(2)]
        layers.pop()  # the last block is not pooled
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.head = nn.Linear(widths[-1], classes)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.head(self.flatten(self.pool(self.features(x))))
        return out


def convnet(scale: float, protocol: Protocol) -> ModelPair:
    """floDl's convnet: batch 128 of 3×64×64, channels 64-128-256-512-512, 100 outputs (MSE).

    Example:
        >>> from flowdl._bench.protocol import FLODL
        >>> convnet(0.05, FLODL).sizes
        {'batch': 6, 'side': 16, 'width': 3, 'outputs': 5}
    """
    batch, side = scaled(128, scale, minimum=2), scaled(64, scale, minimum=16, multiple=16)
    widths = [3] + [scaled(c, scale) for c in (64, 128, 256, 512, 512)]
    classes = scaled(100, scale)
    model = ConvNet(widths, classes)
    twin = copy.deepcopy(model)
    graph = chain([*twin.features, twin.pool, twin.flatten, twin.head]).build()
    return ModelPair(
        "convnet",
        model,
        twin,
        graph,
        noise_regression((batch, 3, side, side), (batch, classes)),
        mse,
        {"batch": batch, "side": side, "width": widths[1], "outputs": classes},
        formulation="a chain of 22 nodes: `fl.Flow` and 21 `.through`",
    )


class ConvAutoencoder(nn.Module):
    """4 × stride-2 Conv4×4–BN–ReLU down, 3 × ConvT4×4–BN–ReLU up, ConvT4×4 to 3 channels, Tanh."""

    def __init__(self, widths: list[int]) -> None:
        super().__init__()
        down: list[nn.Module] = []
        for n_in, n_out in itertools.pairwise(widths):
            conv = nn.Conv2d(n_in, n_out, 4, stride=2, padding=1)
            down += [conv, nn.BatchNorm2d(n_out), nn.ReLU()]
        up: list[nn.Module] = []
        for n_in, n_out in itertools.pairwise(widths[::-1]):
            deconv = nn.ConvTranspose2d(n_in, n_out, 4, stride=2, padding=1)
            up += [deconv, nn.BatchNorm2d(n_out), nn.ReLU()]
        up[-2:] = [nn.Tanh()]  # the last layer has no batch norm and ends in Tanh
        self.encoder = nn.Sequential(*down)
        self.decoder = nn.Sequential(*up)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.decoder(self.encoder(x))
        return out


def conv_autoenc(scale: float, protocol: Protocol) -> ModelPair:
    """floDl's conv_autoenc: batch 64 of 3×64×64, channels 64-128-256-512, target = input.

    Example:
        >>> from flowdl._bench.protocol import FLODL
        >>> conv_autoenc(0.05, FLODL).sizes
        {'batch': 3, 'side': 16, 'width': 3}
    """
    batch, side = scaled(64, scale, minimum=2), scaled(64, scale, minimum=16, multiple=16)
    widths = [3] + [scaled(c, scale) for c in (64, 128, 256, 512)]
    model = ConvAutoencoder(widths)
    twin = copy.deepcopy(model)
    encoder = chain(twin.encoder).label("encoder").build()
    decoder = chain(twin.decoder).label("decoder").build()

    def make_batch(device: torch.device) -> Batch:
        x = torch.randn(batch, 3, side, side, device=device)
        return x, x

    return ModelPair(
        "conv_autoenc",
        model,
        twin,
        fl.Flow(encoder).through(decoder).build(),
        make_batch,
        mse,
        {"batch": batch, "side": side, "width": widths[1]},
        formulation="two nested chains labelled `encoder` (12 nodes) and `decoder` (11)",
    )
