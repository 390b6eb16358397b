"""Routers for `Flow.gate`: one weight per expert and per sample."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from flowdl._nodes._validate import positive_int


def _with_refs(x: Tensor, refs: tuple[Tensor | None, ...]) -> Tensor:
    """The stream plus every reference (``using`` refs are summed in; ``None`` skipped)."""
    for r in refs:
        if r is not None:
            x = x + r
    return x


class SoftmaxRouter(nn.Module):
    """Weights ``softmax(Linear(x))`` over `n` experts: they sum to 1 per sample.

    References given by ``.using(...)`` are added to the stream before the
    projection, so they must have the stream's shape.

    Args:
        in_dim: features of the stream.
        n: number of experts.

    Shape:
        - Input: ``[B, in_dim]`` (or ``[..., in_dim]``).
        - Output: ``[B, n]`` (or ``[..., n]``).

    Example:
        >>> import torch, flowdl as fl
        >>> w = fl.SoftmaxRouter(4, 3)(torch.randn(2, 4))
        >>> w.shape, torch.allclose(w.sum(-1), torch.ones(2))
        (torch.Size([2, 3]), True)
    """

    def __init__(self, in_dim: int, n: int) -> None:
        super().__init__()
        self.n_choices = positive_int("fl.SoftmaxRouter(in_dim, n)", "n", n)
        self.proj = nn.Linear(positive_int("fl.SoftmaxRouter(in_dim, n)", "in_dim", in_dim), n)

    def forward(self, x: Tensor, *refs: Tensor) -> Tensor:
        return torch.softmax(self.proj(_with_refs(x, refs)), dim=-1)


class SigmoidRouter(nn.Module):
    """Independent weights ``sigmoid(Linear(x))`` in (0, 1), one per expert.

    Args:
        in_dim: features of the stream.
        n: number of experts.

    Example:
        >>> import torch, flowdl as fl
        >>> w = fl.SigmoidRouter(4, 3)(torch.randn(2, 4))
        >>> w.shape, bool(((w > 0) & (w < 1)).all())
        (torch.Size([2, 3]), True)
    """

    def __init__(self, in_dim: int, n: int) -> None:
        super().__init__()
        self.n_choices = positive_int("fl.SigmoidRouter(in_dim, n)", "n", n)
        self.proj = nn.Linear(positive_int("fl.SigmoidRouter(in_dim, n)", "in_dim", in_dim), n)

    def forward(self, x: Tensor, *refs: Tensor) -> Tensor:
        return torch.sigmoid(self.proj(_with_refs(x, refs)))


class TopKRouter(nn.Module):
    """Sparse weights: each sample goes to its `k` best experts only.

    The logits ``Linear(x)`` pick the top `k` experts per sample; their weights are
    the softmax of those `k` logits (the full softmax renormalised over the `k`),
    and every other weight is exactly zero. Because ``sparse`` is true, `Flow.gate`
    runs each expert only on the samples routed to it.

    Args:
        in_dim: features of the stream.
        n: number of experts.
        k: experts per sample, ``1 <= k <= n``.

    Shape:
        - Input: ``[B, in_dim]``.
        - Output: ``[B, n]`` with `k` non-zero weights per row, summing to 1.

    Example:
        >>> import torch, flowdl as fl
        >>> w = fl.TopKRouter(4, 5, k=2)(torch.randn(3, 4))
        >>> (w != 0).sum(-1).tolist(), torch.allclose(w.sum(-1), torch.ones(3))
        ([2, 2, 2], True)
    """

    sparse = True

    def __init__(self, in_dim: int, n: int, k: int) -> None:
        super().__init__()
        owner = "fl.TopKRouter(in_dim, n, k)"
        self.n_choices = positive_int(owner, "n", n)
        self.k = positive_int(owner, "k", k)
        if k > n:
            raise ValueError(f"{owner}: k must be at most n (k={k} > n={n})")
        self.proj = nn.Linear(positive_int(owner, "in_dim", in_dim), n)

    def forward(self, x: Tensor, *refs: Tensor) -> Tensor:
        logits = self.proj(_with_refs(x, refs))
        top, index = logits.topk(self.k, dim=-1)
        return torch.zeros_like(logits).scatter(-1, index, torch.softmax(top, dim=-1))

    def extra_repr(self) -> str:
        return f"k={self.k}"
