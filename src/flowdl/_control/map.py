"""`Flow.map`: apply a body to each row of a tensor, or to slices of its last dimension."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from flowdl._control.base import ControlNode, run_inner
from flowdl._describe import describe_value
from flowdl._errors import ControlFlowError

MapMode = Literal["each", "over", "slices"]


class Map(ControlNode):
    """The node of ``.map(body).each()``, ``.over(tag)`` and ``.slices(n)``.

    ``each`` and ``over`` call ``body(row, *refs)`` on every row ``source[i:i+1]``
    (the leading dimension kept, of size 1) and concatenate the results along
    dimension 0. ``slices(n)`` cuts the last dimension ``D`` into ``n`` slices of
    ``D / n``, maps the body over the ``[rows * n, D / n]`` pieces and puts the
    results back side by side: ``[..., D] -> [..., n * D']``. With ``batched``
    the body is called once on all rows at once, which equals the row-by-row
    result for bodies that treat rows independently (not for batch
    normalisation, say). References are passed whole to every call of the body.
    The graph's context is checked before every row.

    Attributes:
        body: the body.
        mode: ``"each"``, ``"over"`` or ``"slices"``.
        n_slices: the ``n`` of ``slices(n)`` (1 otherwise).
        batched: call the body once on the whole batch.
    """

    _roles: ClassVar[dict[str, str]] = {"body": "map body"}
    _watched_attributes: ClassVar[tuple[str, ...]] = ("body",)

    def __init__(
        self, body: Callable[..., Any], mode: MapMode, n_slices: int = 1, batched: bool = False
    ) -> None:
        super().__init__()
        self.body = body
        self.mode = mode
        self.n_slices = n_slices
        self.batched = batched
        self._start_watching()

    def rebuilt(self) -> Map:
        return Map(self.body, self.mode, self.n_slices, self.batched)

    def inner(self) -> list[tuple[str, Callable[..., Any]]]:
        return [("map body", self.body)]

    def forward(self, source: Any, *refs: Any) -> Any:
        rows = self._rows(source)
        if self.batched:
            out = run_inner(
                "map body", self.body, "on the whole batch", self.call_receiver, rows, refs
            )
        else:
            out = self._row_by_row(rows, refs)
        if self.mode == "slices":
            out = out.reshape(*source.shape[:-1], self.n_slices * out.shape[-1])
        return out

    def _rows(self, source: Any) -> Tensor:
        what = "over" if self.mode == "over" else "on the stream"
        if not isinstance(source, Tensor) or source.dim() == 0:
            raise ControlFlowError(
                f"map {what} needs a tensor with rows",
                expected="a tensor of shape [N, ...]",
                received=describe_value(source),
                fix="map over a batched tensor",
            )
        if self.mode != "slices":
            return source
        n = self.n_slices
        if source.dim() < 2:
            raise ControlFlowError(
                f"map slices({n}) needs a tensor of at least 2 dimensions (rows and features)",
                expected="a tensor of shape [B, D] (or [..., D])",
                received=describe_value(source),
                fix="add a batch dimension, e.g. x.unsqueeze(0)",
            )
        width = source.shape[-1]
        if width % n:
            raise ControlFlowError(
                f"map slices({n}): the last dimension ({width}) is not divisible by {n}",
                expected=f"a last dimension that is a multiple of {n}",
                received=describe_value(source),
                fix=f"choose n dividing {width}, or pad the features to a multiple of {n}",
            )
        return source.reshape(-1, width // n)

    def _row_by_row(self, rows: Tensor, refs: tuple[Any, ...]) -> Tensor:
        count = rows.shape[0]
        if count == 0:
            raise ControlFlowError(
                "map has no rows to apply its body to",
                expected="a tensor with at least one row along dimension 0",
                received=describe_value(rows),
                fix="skip empty batches before calling the graph, or use .map(body).batched()",
            )
        ctx = self.context()
        outputs = []
        for i in range(count):
            if ctx is not None:
                ctx.check()
            outputs.append(
                run_inner(
                    "map body",
                    self.body,
                    f"on row {i} (0-based) of {count}",
                    self.call_receiver,
                    rows[i : i + 1],
                    refs,
                )
            )
        try:
            return torch.cat(outputs)
        except (TypeError, RuntimeError) as error:
            raise ControlFlowError(
                "the map body's outputs for the rows cannot be concatenated",
                expected="a tensor of the same shape for every row",
                received=", ".join(describe_value(y) for y in outputs[:4])
                + (", ..." if count > 4 else ""),
                fix="make the body return one [1, ...] tensor per row",
            ) from error
