"""`StateAdd`: the sum of a stream and its state, ``None`` inputs skipped."""

from __future__ import annotations

from torch import Tensor, nn

from flowdl._nodes.merge import sum_left


class StateAdd(nn.Module):
    """Sum of all inputs that are not ``None``: a running accumulator with forward references.

    With ``.through(fl.StateAdd()).using("memory").tag("memory")`` the output is
    the running sum of the inputs of every call so far (zeros are read on the first
    call, or ``None`` from a consumer that asks for it, which is skipped).

    Shape:
        - Inputs: tensors of broadcastable shapes, or ``None``.
        - Output: their broadcast shape.

    Example:
        >>> import torch, flowdl as fl
        >>> fl.StateAdd()(torch.tensor([1.0, 2.0]), None, torch.tensor([1.0, 1.0]))
        tensor([2., 3.])
    """

    def forward(self, *inputs: Tensor | None) -> Tensor:
        present = [x for x in inputs if x is not None]
        if not present:
            raise ValueError(
                f"fl.StateAdd() needs at least one input that is not None, got {len(inputs)} None"
            )
        return sum_left(present)
