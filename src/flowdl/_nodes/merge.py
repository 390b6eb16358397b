"""Merge operations for `Flow.merge`: `Add`, `Mean`, `Cat`. Any callable works too."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


def _need_inputs(name: str, inputs: tuple[Tensor, ...]) -> None:
    if not inputs:
        raise ValueError(f"{name} needs at least one input to combine, got none")


def sum_left(inputs: Sequence[Tensor]) -> Tensor:
    """``inputs[0] + inputs[1] + ...``, left to right, with broadcasting (not in place)."""
    out = inputs[0]
    for x in inputs[1:]:
        out = out + x
    return out


class Add(nn.Module):
    """Sum of the inputs, left to right, with broadcasting.

    Shape:
        - Inputs: tensors of broadcastable shapes.
        - Output: their broadcast shape.

    Example:
        >>> import torch, flowdl as fl
        >>> fl.Add()(torch.tensor([1.0, 2.0]), torch.tensor([10.0, 20.0]), torch.tensor(100.0))
        tensor([111., 122.])
    """

    def forward(self, *inputs: Tensor) -> Tensor:
        _need_inputs("fl.Add()", inputs)
        return sum_left(inputs)


class Mean(nn.Module):
    """Element-wise mean of the inputs, with broadcasting.

    Shape:
        - Inputs: tensors of broadcastable shapes.
        - Output: their broadcast shape.

    Example:
        >>> import torch, flowdl as fl
        >>> fl.Mean()(torch.tensor([1.0, 2.0]), torch.tensor([3.0, 6.0]))
        tensor([2., 4.])
    """

    def forward(self, *inputs: Tensor) -> Tensor:
        _need_inputs("fl.Mean()", inputs)
        return sum_left(inputs) / len(inputs)


class Cat(nn.Module):
    """Concatenation of the inputs along one dimension.

    Args:
        dim: the dimension to concatenate along (default: the last).

    Shape:
        - Inputs: tensors equal in shape except along `dim`.
        - Output: the sizes along `dim` add up.

    Example:
        >>> import torch, flowdl as fl
        >>> fl.Cat(dim=-1)(torch.ones(2, 3), torch.zeros(2, 1)).shape
        torch.Size([2, 4])
    """

    def __init__(self, dim: int = -1) -> None:
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int):
            raise TypeError(f"fl.Cat(dim=...) needs an int dimension, got {dim!r}")
        self.dim = dim

    def forward(self, *inputs: Tensor) -> Tensor:
        _need_inputs(f"fl.Cat(dim={self.dim})", inputs)
        return torch.cat(inputs, dim=self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"
