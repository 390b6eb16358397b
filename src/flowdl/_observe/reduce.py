"""How `Graph.collect` turns a tagged value into one number, and what `Graph.record` accepts.

Both return what the store buffers: a Python float, or a detached one-element
tensor left on its device (read at flush time, so collecting never waits for
the device), which is a copy: changing the caller's tensor afterwards does not
change what was buffered.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any, Literal

from torch import Tensor

from flowdl._describe import describe_value
from flowdl._observe.store import BufferedValue

ReduceName = Literal["mean", "sum", "max", "min", "norm"]
Reduction = ReduceName | Callable[[Tensor], Any]
"""A reduction for `Graph.collect`: a name, or a callable ``tensor -> scalar``."""

REDUCTIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "mean": Tensor.mean,
    "sum": Tensor.sum,
    "max": Tensor.max,
    "min": Tensor.min,
    "norm": Tensor.norm,
}
"""The named reductions: over every element, to a 0-d tensor (``norm`` is the 2-norm)."""


def check_reduction(reduce: Any, call: str) -> Reduction:
    """`reduce` if it is a known name or a callable; otherwise a clear `ValueError`."""
    if callable(reduce) or (isinstance(reduce, str) and reduce in REDUCTIONS):
        return reduce  # type: ignore[no-any-return]
    raise ValueError(
        f"{call}: unknown reduction {reduce!r}; expected one of "
        f"{', '.join(repr(r) for r in REDUCTIONS)} or a callable tensor -> scalar"
    )


def reduce_tagged(value: Any, reduce: Reduction, where: str) -> BufferedValue:
    """One number for a tagged value: `reduce` over all elements of a tensor.

    A tensor is detached and reduced on its device; the result stays a 0-d tensor
    (no host sync). Integer and boolean tensors are reduced in float64. Python
    numbers pass through.

    Raises:
        TypeError: the value is neither a tensor nor a number, or a callable
            reduction returned something else.
        ValueError: the tensor is empty or complex, or the reduction returned more
            than one element.
    """
    if not isinstance(value, Tensor):
        if not isinstance(value, bool) and isinstance(value, numbers.Real):
            return float(value)
        raise TypeError(
            f"{where}: cannot collect {describe_value(value)}; collect reduces a tensor "
            "(or a number) to one value per call. Tag a tensor, or record your own number "
            "with g.record(tag, value)"
        )
    if value.numel() == 0:
        raise ValueError(f"{where}: the value is an empty tensor ({describe_value(value)})")
    if value.is_complex():
        raise ValueError(
            f"{where}: cannot reduce a complex tensor ({describe_value(value)}); "
            "pass reduce=lambda t: t.abs().mean(), say"
        )
    tensor = value.detach()
    if not tensor.is_floating_point():
        tensor = tensor.double()
    if isinstance(reduce, str):
        return REDUCTIONS[reduce](tensor)
    return scalar_of(reduce(tensor), f"{where}: the reduction {reduce!r}")


def scalar_of(value: Any, where: str) -> BufferedValue:
    """A number or a one-element tensor as a buffered value; anything else is an error.

    Raises:
        TypeError: `value` is not a real number or a tensor.
        ValueError: the tensor has more than one element, or is complex.
    """
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, Tensor)):
        raise TypeError(
            f"{where} gave {describe_value(value)} ({value!r}); expected a float or a "
            "one-element tensor such as a loss"
        )
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError(
                f"{where} gave {describe_value(value)}; expected one value (a 0-d tensor "
                "such as a loss), e.g. pass loss rather than the per-sample losses, or "
                "their .mean()"
            )
        if value.is_complex():
            raise ValueError(f"{where} gave a complex tensor; expected a real value")
        # A copy (one element, on the value's device: no host sync), not a view: the
        # caller may change its tensor in place afterwards (an accumulated loss, an
        # optimizer step on a parameter), and the epoch mean must keep what it was.
        return value.detach().clone()
    return float(value)
