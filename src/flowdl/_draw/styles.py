"""How each kind of node looks: shape and colour (goDl's palette), edges, clusters, heat.

The styles are keyed by a *style name* that `flowdl._draw.parts` gives each part:
the node kinds of the record (input, residual, merge, state read), the constructs
(loop, gate, switch, map, their routers, conditions and joins), nested graphs, and
for plain modules a family guessed from the module's class (activation,
normalisation, dropout).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from flowdl._draw.dot_text import Attributes

NODE_STYLES: dict[str, Attributes] = {
    "input": {"shape": "invhouse", "fillcolor": "#aed6f1"},
    "output": {"shape": "house", "fillcolor": "#a9dfbf"},
    "state": {"shape": "diamond", "fillcolor": "#f9e79f"},
    "residual": {"shape": "circle", "fillcolor": "#d5dbdb"},
    "merge": {"shape": "invtrapezium", "fillcolor": "#d5dbdb"},
    "module": {"shape": "box", "fillcolor": "#eaecee"},
    "activation": {"shape": "ellipse", "fillcolor": "#fdebd0"},
    "normalization": {"shape": "box", "fillcolor": "#d5f5e3"},
    "dropout": {"shape": "box", "fillcolor": "#fadbd8"},
    "graph": {"shape": "folder", "fillcolor": "#d6eaf8"},
    "loop": {"shape": "box3d", "fillcolor": "#d7bde2"},
    "map": {"shape": "parallelogram", "fillcolor": "#a9cce3"},
    "router": {"shape": "trapezium", "fillcolor": "#f5cba7"},
    "selector": {"shape": "diamond", "fillcolor": "#f5cba7"},
    "condition": {"shape": "hexagon", "fillcolor": "#f5cba7"},
    "join": {
        "shape": "circle",
        "fillcolor": "#d5dbdb",
        "width": "0.3",
        "height": "0.3",
        "fixedsize": "true",
    },
}
"""Node attributes by style name."""

EDGE_STYLES: dict[str, Attributes] = {
    "stream": {"color": "#2c3e50"},
    "reference": {"style": "dashed", "color": "#2980b9", "fontcolor": "#2980b9"},
    "state": {
        "style": "dotted",
        "color": "#e67e22",
        "fontcolor": "#e67e22",
        "constraint": "false",
        "penwidth": "1.5",
    },
    "route": {"style": "dashed", "color": "#e67e22", "fontcolor": "#e67e22"},
    "join": {"color": "#7f8c8d"},
    "repeat": {
        "color": "#8e44ad",
        "fontcolor": "#8e44ad",
        "style": "bold",
        "constraint": "false",
    },
    "halt": {"style": "dashed", "color": "#8e44ad", "fontcolor": "#8e44ad", "arrowhead": "tee"},
}
"""Edge attributes by kind: data, `using` references, state, routing, loop repeats."""

CLUSTER_STYLES: dict[str, Attributes] = {
    "level": {"style": "dashed", "color": "#999999", "fontcolor": "#999999"},
    "loop": {"style": "rounded,filled", "fillcolor": "#f5eef8", "color": "#d7bde2"},
    "gate": {"style": "rounded,filled", "fillcolor": "#fef9e7", "color": "#f5cba7"},
    "switch": {"style": "rounded,filled", "fillcolor": "#fef9e7", "color": "#f5cba7"},
    "map": {"style": "rounded,filled", "fillcolor": "#eaf2f8", "color": "#a9cce3"},
    "graph": {"style": "rounded,filled", "fillcolor": "#f4f9fd", "color": "#85c1e9"},
}
"""Cluster attributes: the dashed level boxes, and the boxes around constructs and graphs."""

_ACTIVATION_NAMES = frozenset(
    {"relu", "gelu", "silu", "tanh", "sigmoid", "softmax", "log_softmax", "elu", "mish"}
)
_NORMALIZATION_MODULES = (
    "torch.nn.modules.batchnorm",
    "torch.nn.modules.normalization",
    "torch.nn.modules.instancenorm",
)


def module_style(fn: Any) -> str:
    """The style name of a plain module or callable: its family, else ``"module"``.

    Example:
        >>> import torch
        >>> [module_style(m) for m in (torch.nn.GELU(), torch.nn.LayerNorm(4), torch.relu)]
        ['activation', 'normalization', 'activation']
    """
    if isinstance(fn, nn.Module):
        module = type(fn).__module__
        if module == "torch.nn.modules.activation":
            return "activation"
        if module in _NORMALIZATION_MODULES:
            return "normalization"
        if module == "torch.nn.modules.dropout":
            return "dropout"
        return "module"
    name = getattr(fn, "__name__", None)
    if isinstance(name, str) and name.lower() in _ACTIVATION_NAMES:
        return "activation"
    return "module"


_GREEN = (0x27, 0xAE, 0x60)
_YELLOW = (0xF3, 0x9C, 0x12)
_RED = (0xE7, 0x4C, 0x3C)


def heat(ratio: float) -> str:
    """A colour from green (0) through yellow (0.5) to red (1) for a share of the maximum.

    `ratio` is clamped to [0, 1]; each channel is interpolated linearly and
    truncated, as goDl does.

    Example:
        >>> heat(0.0), heat(0.5), heat(1.0), heat(7.0)
        ('#27ae60', '#f39c12', '#e74c3c', '#e74c3c')
    """
    r = min(max(ratio, 0.0), 1.0)
    low, high, t = (_GREEN, _YELLOW, r * 2) if r <= 0.5 else (_YELLOW, _RED, (r - 0.5) * 2)
    channels = (int(a + (b - a) * t) for a, b in zip(low, high, strict=True))
    return "#" + "".join(f"{c:02x}" for c in channels)
