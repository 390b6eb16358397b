"""`fl.LoadReport`: what `load_checkpoint` loaded, and what it could not."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch

from flowdl._checkpoint.errors import CheckpointError


class Mismatch(NamedTuple):
    """A name in both the checkpoint and the model, with another shape or kind of dtype."""

    name: str
    checkpoint_shape: tuple[int, ...]
    model_shape: tuple[int, ...]
    checkpoint_dtype: torch.dtype
    model_dtype: torch.dtype

    def __str__(self) -> str:
        return (
            f"{self.name}: checkpoint {_describe(self.checkpoint_shape, self.checkpoint_dtype)}, "
            f"model {_describe(self.model_shape, self.model_dtype)}"
        )


@dataclass(frozen=True)
class LoadReport:
    """What `fl.load_checkpoint` did.

    Attributes:
        loaded: the state-dict keys copied from the checkpoint into the model.
        missing: keys of the model that the checkpoint lacks (left as they were).
        unexpected: keys of the checkpoint that the model lacks (ignored).
        mismatched: keys in both whose shapes differ, or whose dtypes are of
            different kinds (floating point, integer, boolean, complex): left as they
            were. Each is a `Mismatch` (name, shapes, dtypes).
        hash_matched: whether the checkpoint's structural hash is the model's.
        epoch: the ``epoch=`` given to `save_checkpoint`, or ``None``.
        extra: the extras given to `save_checkpoint` (``epoch`` included).

    With ``strict=True`` (the default) a load either loads everything or raises,
    so `missing`, `unexpected` and `mismatched` are empty.

    Example:
        >>> import tempfile, pathlib, torch, flowdl as fl
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "model.safetensors"
        >>> fl.save_checkpoint(path, torch.nn.Linear(2, 2), epoch=3)
        >>> report = fl.load_checkpoint(path, torch.nn.Linear(2, 2))
        >>> report.loaded, report.epoch, report.complete
        (('weight', 'bias'), 3, True)
    """

    loaded: tuple[str, ...]
    missing: tuple[str, ...]
    unexpected: tuple[str, ...]
    mismatched: tuple[Mismatch, ...]
    hash_matched: bool = True
    epoch: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """Everything matched: nothing missing, unexpected or mismatched."""
        return not (self.missing or self.unexpected or self.mismatched)

    def __str__(self) -> str:
        lines = [
            f"loaded {len(self.loaded)} tensors"
            + ("" if self.hash_matched else " (the structural hash differs)")
        ]
        for title, items, comma in (
            ("missing from the checkpoint", self.missing, ", "),
            ("not in the model", self.unexpected, ", "),
            ("mismatched", tuple(str(m) for m in self.mismatched), "; "),
        ):
            if items:
                lines.append(f"{title}: {comma.join(items)}")
        return "\n".join(lines)


def _describe(shape: tuple[int, ...], dtype: torch.dtype) -> str:
    return f"[{', '.join(str(d) for d in shape)}] {str(dtype).removeprefix('torch.')}"


LISTED = 6
"""How many names an error message lists before ``...``."""


def dtype_kind(dtype: torch.dtype) -> str:
    """The kind a stored tensor must keep: a load may change the width, not the kind.

    Example:
        >>> dtype_kind(torch.float16), dtype_kind(torch.int8), dtype_kind(torch.bool)
        ('floating point', 'integer', 'boolean')
    """
    if dtype.is_complex:
        return "complex"
    if dtype.is_floating_point:
        return "floating point"
    return "boolean" if dtype == torch.bool else "integer"


def describe_differences(report: LoadReport) -> str:
    """The names a checkpoint and a model disagree on, a line per kind, for an error."""
    parts = []
    for title, items, comma in (
        ("missing from the checkpoint", list(report.missing), ", "),
        ("not in the model", list(report.unexpected), ", "),
        ("mismatched", [str(m) for m in report.mismatched], "; "),
    ):
        if items:
            shown = comma.join(items[:LISTED]) + (comma + "..." if len(items) > LISTED else "")
            parts.append(f"\n{title} ({len(items)}): {shown}")
    return "".join(parts) or "\nthe same tensor names and shapes (the wiring or types differ)"


def refuse_mismatch(
    report: LoadReport,
    *,
    hashes_match: bool,
    model_type: str,
    expected_hash: str,
    saved_hash: str,
    where: str,
) -> None:
    """A strict load's two refusals: another model's checkpoint, or tensors that differ.

    Raises:
        CheckpointError: the structural hashes differ, or the report is not complete.
    """
    if not hashes_match:
        raise CheckpointError(
            f"the checkpoint was saved from another model (a {model_type}): "
            "the structural hashes differ",
            path=where,
            expected=f"structural hash {expected_hash}",
            received=f"structural hash {saved_hash} (in the checkpoint)"
            + describe_differences(report),
            fix="load it into a model built like the one it was saved from; or pass "
            "strict=False to load the tensors whose names and shapes match (the report "
            "lists the rest)",
        )
    if not report.complete:
        raise CheckpointError(
            "the checkpoint's tensors do not match the model's",
            path=where,
            expected="the same state-dict keys, shapes and kinds of dtype",
            received=describe_differences(report).strip(),
            fix="pass strict=False to load what matches (the report lists the rest)",
        )
