"""Routers for `Flow.gate`: one weight per expert and per sample."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from flowdl._errors import render_message
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

    The logits ``Linear(x)`` pick the top `k` experts per sample; every other
    weight is exactly zero. The weights of the chosen experts come from the
    softmax over *all* `n` logits, so the router always receives a gradient
    (through the probabilities it gave the experts it chose, and through the
    normaliser over the others):

    - ``renormalize=False``: the chosen experts keep their probabilities, which
      sum to less than 1 (the Switch Transformer's top-1 rule: a top-1 gate
      returns ``p * expert(x)``, and training moves ``p``);
    - ``renormalize=True``: the chosen probabilities are divided by their sum,
      i.e. the softmax of the `k` chosen logits (Mixtral's top-2 rule). Not
      allowed for ``k=1``, where every weight would be 1 and the router would
      never learn;
    - ``None`` (the default): renormalise when ``k >= 2``, not for ``k=1``.

    Because ``sparse`` is true, `Flow.gate` runs each expert only on the
    samples routed to it.

    Args:
        in_dim: features of the stream.
        n: number of experts.
        k: experts per sample, ``1 <= k <= n``.
        renormalize: whether the `k` weights of a sample sum to 1 (see above).

    Shape:
        - Input: ``[B, in_dim]``.
        - Output: ``[B, n]`` with `k` non-zero weights per row.

    Example:
        >>> import torch, flowdl as fl
        >>> w = fl.TopKRouter(4, 5, k=2)(torch.randn(3, 4))
        >>> (w != 0).sum(-1).tolist(), torch.allclose(w.sum(-1), torch.ones(3))
        ([2, 2, 2], True)
        >>> r = fl.TopKRouter(4, 5, k=1)
        >>> x = torch.randn(3, 4)
        >>> torch.equal(r(x).amax(-1), torch.softmax(r.proj(x), -1).amax(-1))
        True
    """

    sparse = True

    def __init__(self, in_dim: int, n: int, k: int, *, renormalize: bool | None = None) -> None:
        super().__init__()
        owner = "fl.TopKRouter(in_dim, n, k)"
        self.n_choices = positive_int(owner, "n", n)
        self.k = positive_int(owner, "k", k)
        if k > n:
            raise ValueError(f"{owner}: k must be at most n (k={k} > n={n})")
        if renormalize is not None and not isinstance(renormalize, bool):
            raise ValueError(
                render_message(
                    f"{owner}: renormalize must be True, False or None",
                    [("received", f"{type(renormalize).__name__} {renormalize!r}")],
                )
            )
        if renormalize and k == 1:
            raise ValueError(
                render_message(
                    f"{owner}: renormalize=True with k=1 gives every chosen expert the "
                    "weight 1, so the router would never receive a gradient",
                    [
                        ("expected", "k >= 2 with renormalize=True"),
                        ("received", "k=1, renormalize=True"),
                        (
                            "fix",
                            "leave renormalize out (k=1 keeps the chosen expert's probability, "
                            "as the Switch Transformer does), or route to k >= 2 experts",
                        ),
                    ],
                )
            )
        self.renormalize: bool = k > 1 if renormalize is None else renormalize
        self.proj = nn.Linear(positive_int(owner, "in_dim", in_dim), n)

    def forward(self, x: Tensor, *refs: Tensor) -> Tensor:
        logits = self.proj(_with_refs(x, refs))
        top, index = logits.topk(self.k, dim=-1)
        if self.renormalize:  # the softmax of the k chosen logits: the full one, renormalised
            weights = torch.softmax(top, dim=-1)
        else:  # the full softmax's probabilities of the chosen experts
            weights = torch.softmax(logits, dim=-1).gather(-1, index)
        return torch.zeros_like(logits).scatter(-1, index, weights)

    def extra_repr(self) -> str:
        return f"k={self.k}, renormalize={self.renormalize}"
