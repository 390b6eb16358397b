"""Selectors for `Flow.switch`: which branch runs, for the batch or for each sample."""

from __future__ import annotations

from torch import Tensor, nn

from flowdl._nodes._validate import positive_int
from flowdl._nodes.routers import _with_refs


class FixedSelector(nn.Module):
    """Always select branch `index`, for the whole batch.

    Args:
        index: the branch, ``>= 0`` (checked against the number of branches when
            the graph is built).

    Example:
        >>> import torch, flowdl as fl
        >>> fl.FixedSelector(1)(torch.zeros(4, 2))
        1
    """

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = positive_int("fl.FixedSelector(index)", "index", index, minimum=0)

    def forward(self, x: object, *refs: object) -> int:
        return self.index

    def extra_repr(self) -> str:
        return str(self.index)


class ArgmaxSelector(nn.Module):
    """Per sample, the branch with the largest logit of ``Linear(x)``.

    References given by ``.using(...)`` are added to the stream before the
    projection. Each sample is routed on its own row: the argmax is taken over
    the last dimension, never over the flattened batch.

    Args:
        in_dim: features of the stream.
        n: number of branches.

    Shape:
        - Input: ``[B, in_dim]``.
        - Output: ``[B]`` int64 branch indices in ``[0, n)``.

    Example:
        >>> import torch, flowdl as fl
        >>> select = fl.ArgmaxSelector(2, 2)
        >>> with torch.no_grad():
        ...     _ = select.proj.weight.copy_(torch.tensor([[-1.0, 1.0], [1.0, -1.0]]))
        ...     _ = select.proj.bias.zero_()
        >>> select(torch.tensor([[1.0, 2.0], [2.0, 1.0]]))
        tensor([0, 1])
    """

    def __init__(self, in_dim: int, n: int) -> None:
        super().__init__()
        owner = "fl.ArgmaxSelector(in_dim, n)"
        self.n_choices = positive_int(owner, "n", n)
        self.proj = nn.Linear(positive_int(owner, "in_dim", in_dim), n)

    def forward(self, x: Tensor, *refs: Tensor) -> Tensor:
        logits: Tensor = self.proj(_with_refs(x, refs))
        return logits.argmax(dim=-1)
