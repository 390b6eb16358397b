"""Halt conditions for ``Flow.loop(...).while_`` and ``.until``: positive means stop."""

from __future__ import annotations

from torch import Tensor, nn

from flowdl._nodes._validate import positive_int


class ThresholdHalt(nn.Module):
    """Halt the whole batch once any element of the state exceeds `threshold`.

    Returns the scalar ``max(state) - threshold`` (no gradient): positive halts.

    Args:
        threshold: the level to exceed.

    Example:
        >>> import torch, flowdl as fl
        >>> fl.ThresholdHalt(10.0)(torch.tensor([[1.0, 12.0]]))
        tensor(2.)
    """

    def __init__(self, threshold: float) -> None:
        super().__init__()
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise ValueError(
                f"fl.ThresholdHalt(threshold): threshold must be a number; received "
                f"{type(threshold).__name__} {threshold!r}"
            )
        self.threshold = float(threshold)

    def forward(self, state: Tensor) -> Tensor:
        return (state.detach().max() - self.threshold).reshape(())

    def extra_repr(self) -> str:
        return str(self.threshold)


class LearnedHalt(nn.Module):
    """Halt each sample on its own when its learned score ``Linear(state)`` is positive.

    Returns ``[B, 1]`` scores, so a loop halts per sample. The halting decision
    is not differentiable: train the projection through a loss of its own (an
    adaptive-computation ponder cost, say; see the tutorial).

    Args:
        dim: features of the state.

    Example:
        >>> import torch, flowdl as fl
        >>> fl.LearnedHalt(4)(torch.randn(3, 4)).shape
        torch.Size([3, 1])
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(positive_int("fl.LearnedHalt(dim)", "dim", dim), 1)

    def forward(self, state: Tensor) -> Tensor:
        score: Tensor = self.proj(state)
        return score
