"""Where an epoch's metrics come from: dicts, objects with ``latest_metrics()``, or several."""

from __future__ import annotations

import numbers
from collections.abc import Mapping

import torch

from flowdl._errors import render_message
from flowdl._monitor.resources import RESOURCE_NAMES

# Column names of the monitor's CSV that metrics cannot take.
FIXED_COLUMNS = ("epoch", "duration_s", "elapsed_s", "eta_s", *RESOURCE_NAMES)


def collect_metrics(sources: tuple[object, ...], call: str) -> dict[str, float]:
    """Merge the metrics of every source, in order, into ``{name: float}``.

    A source is a mapping ``{name: value}`` or an object with a ``latest_metrics()``
    method returning one (an `fl.Graph`). A value is a real number or a one-element
    tensor (read with ``.item()``). A name given by two sources is an error: which one
    is meant cannot be known.

    Args:
        sources: the sources, as passed to `Monitor.log`.
        call: the call, for error messages (``"Monitor.log(epoch=3, ...)"``).

    Returns:
        The metrics, in the order the sources list them.

    Raises:
        TypeError: a source, a name or a value of an unsupported type.
        ValueError: an empty name, or one given twice.

    Example:
        >>> import torch
        >>> collect_metrics(({"loss": torch.tensor(0.5)}, {"accuracy": 0.75}), "log")
        {'loss': 0.5, 'accuracy': 0.75}
    """
    merged: dict[str, float] = {}
    origin: dict[str, str] = {}
    for index, source in enumerate(sources, start=1):
        where = f"source {index} ({_kind(source)})"
        for name, value in _pairs(source, where, call).items():
            if not isinstance(name, str) or not name:
                raise (TypeError if not isinstance(name, str) else ValueError)(
                    render_message(
                        "a metric name must be a non-empty string",
                        [
                            ("at", f"{call}, {where}"),
                            ("received", repr(name)),
                            ("fix", 'name every metric, e.g. {"loss": 0.25}'),
                        ],
                    )
                )
            if name in FIXED_COLUMNS:
                raise ValueError(
                    render_message(
                        f"the metric name {name!r} is taken by the monitor's own column",
                        [
                            ("at", f"{call}, {where}"),
                            ("expected", "a name other than " + ", ".join(FIXED_COLUMNS)),
                            ("fix", f"rename the metric, e.g. {('train_' + name)!r}"),
                        ],
                    )
                )
            if name in merged:
                raise ValueError(
                    render_message(
                        f"the metric {name!r} is given twice",
                        [
                            ("at", call),
                            ("received", f"{name!r} from {origin[name]} and from {where}"),
                            ("fix", "give each metric once, or rename one of them"),
                        ],
                    )
                )
            merged[name] = _number(value, name, where, call)
            origin[name] = where
    return merged


def _pairs(source: object, where: str, call: str) -> Mapping[object, object]:
    if isinstance(source, Mapping):
        return source
    latest = getattr(source, "latest_metrics", None)
    if callable(latest):
        pairs = latest()
        if isinstance(pairs, Mapping):
            return pairs
        raise TypeError(
            render_message(
                "latest_metrics() did not return a mapping",
                [
                    ("at", f"{call}, {where}"),
                    ("expected", "{name: value}"),
                    ("received", type(pairs).__name__),
                ],
            )
        )
    raise TypeError(
        render_message(
            "the monitor cannot read metrics from this source",
            [
                ("at", f"{call}, {where}"),
                ("expected", "a dict {name: value} or a graph (anything with latest_metrics())"),
                ("received", f"{type(source).__name__}: {_short(source)}"),
                ("fix", 'pass e.g. monitor.log(epoch, {"loss": loss}) or monitor.log(epoch, g)'),
            ],
        )
    )


def _number(value: object, name: str, where: str, call: str) -> float:
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_complex():
        return float(value.item())
    if not isinstance(value, bool) and isinstance(value, numbers.Real):
        return float(value)
    shape = f" of shape {list(value.shape)}" if isinstance(value, torch.Tensor) else ""
    raise TypeError(
        render_message(
            f"the metric {name!r} is not a number",
            [
                ("at", f"{call}, {where}"),
                ("expected", "a real number or a one-element tensor"),
                ("received", f"{type(value).__name__}{shape}: {_short(value)}"),
                ("fix", "reduce it to one number first, e.g. loss.mean() or loss.item()"),
            ],
        )
    )


def _kind(source: object) -> str:
    if isinstance(source, Mapping):
        return "a dict"
    return f"{type(source).__name__}.latest_metrics()"


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
