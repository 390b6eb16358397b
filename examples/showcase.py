"""Every builder method in one graph, drawn and profiled.

Run ``python examples/showcase.py [OUT_DIR]``: it builds the graph, runs it a few
times with profiling on, prints its summary and profile, and writes
``showcase.dot``, ``showcase.svg`` and ``showcase-profile.svg`` into ``OUT_DIR``
(default: the current folder). The SVGs need Graphviz's ``dot`` program; without
it only the DOT text is written. The pictures in ``docs/`` come from this script.

The model is goDl's showcase adapted to flowdl: a batch of 2-feature samples,
embedded to 8 features, through every construct, to 2 outputs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import Tensor, nn

import flowdl as fl

H = 8
"""The width of the stream."""


def read_head(dim: int) -> fl.Graph:
    """A small nested graph: ``Linear -> LayerNorm``."""
    return fl.Flow(nn.Linear(dim, dim)).through(nn.LayerNorm(dim)).build()


def ffn_block(dim: int) -> fl.Graph:
    """A labelled nested graph, ``Linear -> GELU -> LayerNorm``: the body of a loop."""
    return (
        fl.Flow(nn.Linear(dim, dim))
        .through(nn.GELU())
        .through(nn.LayerNorm(dim))
        .label("ffn")
        .build()
    )


class Mix(nn.Module):
    """``linear(x) + linear_context(context)``: a module fed a reference."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, dim)
        self.linear_context = nn.Linear(dim, dim)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        return self.linear(x) + self.linear_context(context)


class HeavyPathSelector(nn.Module):
    """Per sample: branch 1 where the refined features peak above 0.5, else branch 0.

    Reads its reference by name (``forward_named``), as goDl's showcase selector does.
    """

    def ref_names(self) -> list[str]:
        return ["refined"]

    def forward_named(self, x: Tensor, refs: dict[str, Tensor]) -> Tensor:
        return (refs["refined"].amax(dim=-1) > 0.5).long()

    def forward(self, x: Tensor, *refs: Tensor) -> int:
        return 0


def build_showcase() -> fl.Graph:
    """The showcase graph: ``g(x, context)`` with ``x: [B, 2]``, ``context: [B, 8]``."""
    shared = nn.Linear(H, H)  # used twice: its weights are counted once
    return (
        fl.Flow(nn.Linear(2, H)).tag("embed")
        .input("context")                                       # a second graph input
        .through(nn.GELU())
        .through(nn.LayerNorm(H))
        .fork(nn.Linear(H, 1)).tag("score")                     # side output
        .split(read_head(H), read_head(H)).tag_group("heads").merge(fl.Mean())
        .through(Mix(H)).using("context")                       # backward reference
        .also(shared)                                           # residual
        .through(nn.Dropout(0.1))
        .map(read_head(2)).slices(4)                            # [B, 8] -> 4 x [B, 2]
        .through(fl.Reshape(-1, 4))                             # [2B, 4]
        .map(nn.Linear(4, 4)).each().tag("halves")
        .map(nn.Linear(4, 4)).batched().over("halves")
        .through(fl.Reshape(-1, H))                             # [B, 8]
        .loop(ffn_block(H)).for_(2).tag("refined")
        .gate(fl.SoftmaxRouter(H, 2), nn.Linear(H, H), nn.Linear(H, H)).using("embed")
        .gate(fl.TopKRouter(H, 4, 2), *(nn.Linear(H, H) for _ in range(4)))
        .switch(HeavyPathSelector(), nn.Linear(H, H), fl.Flow(nn.Linear(H, H)).through(nn.Tanh()))
        .using("refined")
        .through(fl.StateAdd()).using("memory").tag("memory")   # forward reference: state
        .loop(nn.Linear(H, H)).while_(fl.ThresholdHalt(100.0), 5)
        .loop(nn.Linear(H, H)).until(fl.LearnedHalt(H), 7)
        .through(shared)                                        # the shared module again
        .through(nn.Linear(H, 2))
        .label("showcase")
        .build()
    )  # fmt: skip


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else Path(".")
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    g = build_showcase()
    g.eval()  # dropout off: the profile times the same work every call
    x, context = torch.randn(4, 2), torch.randn(4, H)
    g.enable_profiling()
    with torch.no_grad():
        for _ in range(3):  # the first call pays one-off costs; draw the last
            y = g(x, context)
    print(g.summary())
    print()
    print(g.profile())
    print(f"\noutput: {tuple(y.shape)}")
    (out / "showcase.dot").write_text(g.dot())
    written = [out / "showcase.dot"]
    try:
        g.svg(out / "showcase.svg")
        g.svg(out / "showcase-profile.svg", profile=True)
        written += [out / "showcase.svg", out / "showcase-profile.svg"]
    except RuntimeError as error:
        print(f"\nno SVG: {error}", file=sys.stderr)
    print("\nwrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
