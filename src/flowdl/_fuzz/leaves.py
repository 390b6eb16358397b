"""The user code of fuzzed graphs: weights drawn from seeds, and the maths of the
modules a user would write.

Both sides use this file: the builder wraps these functions in modules, the
interpreter calls them directly. Nothing here is flowdl's: flowdl's own modules
(routers, selectors, halts, merges, `fl.StateAdd`) are computed by the interpreter
from their documented formulas, never from here. Everything is float64.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

DTYPE = torch.float64
"""The dtype of every fuzzed tensor."""


def draw(seed: int, *shapes: tuple[int, ...], scale: float = 1.0) -> list[Tensor]:
    """Tensors of the given shapes, normal with std `scale`, drawn from `seed`.

    Example:
        >>> a, b = draw(3, (2,), (1,))
        >>> torch.equal(a, draw(3, (2,), (1,))[0]), a.dtype
        (True, torch.float64)
    """
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=generator, dtype=DTYPE) * scale for shape in shapes]


def leaf_weights(kind: str, seed: int, din: int, dout: int, arity: int) -> dict[str, Tensor]:
    """The weights of a `Leaf`: ``weight`` and ``bias`` (linear kinds), ``mix`` (refs).

    Example:
        >>> sorted(leaf_weights("tanh", 1, 3, 3, 2))
        ['bias', 'mix', 'weight']
        >>> leaf_weights("sin", 1, 3, 3, 0)
        {}
    """
    found: dict[str, Tensor] = {}
    if kind in ("linear", "tanh"):
        weight, bias = draw(seed, (dout, din), (dout,), scale=0.8 / math.sqrt(din))
        found["weight"], found["bias"] = weight, bias
    if arity and kind in ("linear", "tanh", "sin"):
        found["mix"] = draw(seed + 1, (arity,), scale=0.5)[0]
    return found


def leaf_forward(kind: str, weights: dict[str, Tensor], x: Tensor, refs: list[Tensor]) -> Tensor:
    """A user `Leaf`'s output: ``core(x) + sum_j mix_j * ref_j``, where ``core`` is
    ``Wx + b`` (``"linear"``), ``tanh(Wx + b)`` (``"tanh"``) or ``sin(x)`` (``"sin"``).
    (A ``"stateadd"`` leaf is flowdl's `fl.StateAdd`, not user code: not here.)

    Example:
        >>> x = torch.zeros(2, 3, dtype=DTYPE)
        >>> leaf_forward("sin", {"mix": torch.tensor([2.0], dtype=DTYPE)}, x, [x + 1])[0].tolist()
        [2.0, 2.0, 2.0]
    """
    if kind == "batchmean":  # a batch statistic: the same [dim] for every sample
        return x.mean(0)
    if kind == "sin":
        out = torch.sin(x)
    else:
        out = torch.nn.functional.linear(x, weights["weight"], weights["bias"])
        if kind == "tanh":
            out = torch.tanh(out)
    for j, ref in enumerate(refs):
        out = out + weights["mix"][j] * ref
    return out


def init_weight(kind: str, seed: int, dim: int) -> Tensor:
    """The tensor first value of a state tag: ``[dim]`` (``"vector"``) or ``[1, dim]``."""
    shape = (dim,) if kind == "vector" else (1, dim)
    return draw(seed, shape, scale=0.5)[0]


def init_callable(stream: Tensor) -> Tensor:
    """A first value computed from the reading node's stream: ``0.5 * tanh(stream)``."""
    return 0.5 * torch.tanh(stream)


def projection_weights(seed: int, din: int, dout: int) -> tuple[Tensor, Tensor]:
    """``(weight, bias)`` for flowdl's projecting modules (routers, selectors, halts)."""
    weight, bias = draw(seed, (dout, din), (dout,), scale=1.5 / math.sqrt(din))
    return weight, bias


def product(*branches: Tensor) -> Tensor:
    """The ``"product"`` merge: the branch outputs multiplied element-wise."""
    out = branches[0]
    for branch in branches[1:]:
        out = out * branch
    return out


def row_sum_halt(state: Tensor, level: float, keepdim: bool) -> Tensor:
    """Per-sample halting: ``state.sum(-1) - level``, ``[B]`` or ``[B, 1]``."""
    return state.sum(-1, keepdim=keepdim) - level


def mean_halt(state: Tensor, level: float) -> Tensor:
    """Whole-batch halting: the scalar ``state.mean() - level``."""
    return state.mean() - level


def row_selector(x: Tensor, refs: list[Tensor], n: int) -> Tensor:
    """Per-sample branch: ``floor(n * sigmoid(3 * rowsum(x + refs)))``, clamped, ``[B]``."""
    for ref in refs:
        x = x + ref
    score = torch.sigmoid(3 * x.sum(-1))
    return torch.clamp(torch.floor(n * score), max=n - 1).long()


def batch_selector(x: Tensor, refs: list[Tensor], n: int) -> int:
    """Whole-batch branch, a Python ``int``: 1 when the batch mean (with refs) is positive."""
    for ref in refs:
        x = x + ref
    return int(bool(x.mean() > 0)) % n
