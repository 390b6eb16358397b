"""Routing made visible: what share of the samples a gate or a switch sent where.

A gate or switch does no routing bookkeeping until someone asks (`Graph.routing`,
`Graph.collect_routing`): asking attaches a `RoutingWatch` to the node, and from
then on each forward keeps a reference to the router's weights (a gate) or the
selector's choice (a switch), nothing more. The figures are computed from that
reference when they are read, never during a forward.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

__all__ = ["RoutingUsage", "RoutingWatch", "usage_from_choice", "usage_from_weights"]


class RoutingWatch(threading.local):
    """What a watched gate or switch saw in the last forward of each thread.

    Per thread, like a loop's counts: a thread reads its own call's routing.
    Copies and pickles start empty (still watching).
    """

    def __init__(self) -> None:
        self.seen: Any = None  # the gate's weights, or (the switch's choice, batch size)

    def note(self, seen: Any) -> None:
        """Keep `seen` (a reference, no copy); traced code (torch.compile) keeps nothing."""
        if not torch.compiler.is_compiling():
            self.seen = seen

    def __reduce__(self) -> tuple[type[RoutingWatch], tuple[()]]:
        return RoutingWatch, ()


@dataclass(frozen=True)
class RoutingUsage:
    """How a gate or a switch routed the samples of the last forward.

    ``fraction[i]`` is the share of the samples routed to expert (or branch) `i`:

    - a switch: the samples whose selector chose branch `i` (they sum to 1; a
      whole-batch choice gives 1 to that branch);
    - a sparse gate (top-k router): the samples whose weight for expert `i` is
      non-zero, i.e. that ran expert `i` (they sum to `k`);
    - a dense (soft) gate, where every expert runs on every sample: the samples
      whose largest weight is expert `i`'s (the first on ties; they sum to 1).

    ``mean_weight[i]`` (gates only) is the mean over the samples of their weight
    for expert `i` (zero where a sparse gate skipped it). It keeps its autograd
    history, so a load-balancing loss built from it trains the router
    (`balance_loss`). The leading dimensions of the weights all count as samples.

    Attributes:
        kind: ``"gate"`` or ``"switch"``.
        names: ``"expert 0"``, ``"expert 1"``... (``"branch i"`` for a switch).
        fraction: ``float [n]``, no gradient.
        mean_weight: ``[n]`` with the router's autograd history, or ``None`` (switch).
        samples: how many samples were routed.

    Example:
        >>> import torch
        >>> u = usage_from_weights(torch.tensor([[0.0, 0.8, 0.2], [0.0, 1.0, 0.0]]), sparse=True)
        >>> u.fraction.tolist(), u.mean_weight.tolist()
        ([0.0, 1.0, 0.5], [0.0, 0.8999999761581421, 0.10000000149011612])
        >>> u.metrics("moe")["moe/usage/1"]
        tensor(1.)
    """

    kind: Literal["gate", "switch"]
    names: tuple[str, ...]
    fraction: Tensor
    mean_weight: Tensor | None
    samples: int

    def metrics(self, prefix: str) -> dict[str, Tensor]:
        """The figures as one-element detached tensors, named ``<prefix>/usage/<i>`` and,
        for a gate, ``<prefix>/weight/<i>`` (what `Graph.collect_routing` buffers)."""
        out = {f"{prefix}/usage/{i}": f for i, f in enumerate(self.fraction.detach().unbind())}
        if self.mean_weight is not None:
            weights = self.mean_weight.detach().unbind()
            out.update({f"{prefix}/weight/{i}": w for i, w in enumerate(weights)})
        return out

    def balance_loss(self, probabilities: Tensor | None = None) -> Tensor:
        """The Switch Transformer's load-balancing loss ``n · Σ_i f_i · P_i``.

        ``f_i`` is the share of the dispatches that went to expert `i`
        (``fraction / fraction.sum()``, no gradient) and ``P_i`` the mean router
        probability of expert `i`, differentiable: by default the gate's mean
        weight (`mean_weight`); pass the router's full probabilities ``[..., n]``
        (the softmax over all logits, before top-k) to give every expert a
        gradient, also those a top-k router never chose (its zero weights carry
        none). For a uniform routing it is the mean total probability per sample
        (1 for a softmax); collapsed onto expert `j` it is ``n · P_j``. Add it,
        scaled (``0.01`` in the paper), to the training loss.

        Args:
            probabilities: the router's probabilities for the same samples, or
                ``None`` for `mean_weight`.

        Raises:
            ValueError: for a switch without `probabilities` (a selector has no
                weights), or probabilities without one entry per expert.

        Example:
            >>> import torch
            >>> w = torch.softmax(torch.zeros(4, 2, requires_grad=True), -1)
            >>> usage_from_weights(w, sparse=False).balance_loss()
            tensor(1., grad_fn=<MulBackward0>)
        """
        n = self.fraction.numel()
        if probabilities is not None:
            if probabilities.dim() == 0 or probabilities.shape[-1] != n:
                raise ValueError(
                    f"balance_loss(probabilities): expected the router's probabilities with "
                    f"{n} entries in the last dimension (one per {self.names[0].split()[0]}), "
                    f"received shape {list(probabilities.shape)}"
                )
            mean = probabilities.reshape(-1, n).mean(0)
        elif self.mean_weight is None:
            raise ValueError(
                "balance_loss() needs router weights, and a switch's selector gives none; "
                "pass the selector's probabilities (balance_loss(probabilities)), or build "
                "the loss from a gate's routing (g.routing(<gate tag>))"
            )
        else:
            mean = self.mean_weight
        share = self.fraction / self.fraction.sum().clamp_min(1e-12)
        return n * (share.to(device=mean.device, dtype=mean.dtype) * mean).sum()


def usage_from_weights(weights: Tensor, sparse: bool) -> RoutingUsage:
    """The usage of a gate whose router gave `weights` (``[..., n]``).

    Example:
        >>> import torch
        >>> usage_from_weights(torch.tensor([[0.7, 0.3], [0.4, 0.6]]), sparse=False).fraction
        tensor([0.5000, 0.5000])
    """
    n = weights.shape[-1]
    rows = weights.reshape(-1, n)
    with torch.no_grad():
        routed = rows != 0 if sparse else torch.nn.functional.one_hot(rows.argmax(-1), n).bool()
        fraction = routed.to(torch.float64).mean(0).float() if rows.shape[0] else torch.zeros(n)
    mean = rows.mean(0) if rows.shape[0] else rows.new_zeros(n)
    names = tuple(f"expert {i}" for i in range(n))
    return RoutingUsage("gate", names, fraction.to(weights.device), mean, rows.shape[0])


def usage_from_choice(choice: Any, batch: int, n: int) -> RoutingUsage:
    """The usage of a switch of `n` branches whose selector returned `choice` for a
    stream of `batch` samples (an index for the whole batch, or one per sample).

    Example:
        >>> import torch
        >>> usage_from_choice(torch.tensor([2, 0, 2, 2]), 4, 3).fraction
        tensor([0.2500, 0.0000, 0.7500])
    """
    names = tuple(f"branch {i}" for i in range(n))
    if isinstance(choice, Tensor) and choice.numel() != 1:
        index = choice.detach().reshape(-1).long()
        counts = torch.bincount(index.clamp(0, n - 1), minlength=n)
        total = max(index.numel(), 1)
        fraction = counts.to(torch.float64).div(total).float()
        return RoutingUsage("switch", names, fraction, None, index.numel())
    i = int(choice.reshape(())) if isinstance(choice, Tensor) else int(choice)
    device = choice.device if isinstance(choice, Tensor) else None
    fraction = torch.zeros(n, device=device)
    fraction[i] = 1.0
    return RoutingUsage("switch", names, fraction, None, batch)
