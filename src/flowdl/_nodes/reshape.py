"""`Reshape`: a fixed reshape as a node."""

from __future__ import annotations

from torch import Tensor, nn


class Reshape(nn.Module):
    """Reshape the input to a fixed shape; ``-1`` (at most once) is inferred.

    Use ``-1`` for the batch dimension to keep the graph batch-size independent:
    ``fl.Reshape(-1, 4, 2)``.

    Args:
        *shape: the target shape, as ints or a single tuple.

    Shape:
        - Input: any shape with the same number of elements.
        - Output: `shape`.

    Example:
        >>> import torch, flowdl as fl
        >>> fl.Reshape(-1, 2, 2)(torch.arange(8)).shape
        torch.Size([2, 2, 2])
    """

    def __init__(self, *shape: int | tuple[int, ...]) -> None:
        super().__init__()
        dims: tuple[object, ...] = shape
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            dims = tuple(shape[0])
        if not dims or any(isinstance(d, bool) or not isinstance(d, int) or d < -1 for d in dims):
            raise ValueError(
                f"fl.Reshape(*shape) needs one or more ints (>= 0, or -1 once); got {shape!r}"
            )
        if sum(1 for d in dims if d == -1) > 1:
            raise ValueError(f"fl.Reshape(*shape) can infer only one dimension (-1); got {shape!r}")
        self.shape: tuple[int, ...] = tuple(d for d in dims if isinstance(d, int))

    def forward(self, x: Tensor) -> Tensor:
        return x.reshape(self.shape)

    def extra_repr(self) -> str:
        return ", ".join(map(str, self.shape))
