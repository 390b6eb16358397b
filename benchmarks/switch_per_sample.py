"""Per-sample switch: a flowdl ``.switch`` with 4 branches against hand-written masked PyTorch.

The selector (`fl.ArgmaxSelector`) routes each of the 256 samples to one of four
branches (``Linear -> GELU -> Linear``). The hand-written module does what one
writes without flowdl: for each branch, ``mask = index == i`` and
``out[mask] = branch(x[mask])``. Both hold the same modules; they are checked to
compute the same output before timing. Rounds alternate (A B A B ...) in one
process; the report gives the median and scaled MAD per step and the median ± scaled MAD
of the round-by-round ratios.

Run: ``python benchmarks/switch_per_sample.py [--batch 256] [--dim 256] [--rounds 30]``
"""

from __future__ import annotations

import argparse
import platform

import torch
from torch import Tensor, nn

import flowdl as fl
from flowdl._bench.protocol import interleave, repeated
from flowdl._bench.stats import Summary, paired_ratio


class MaskedSwitch(nn.Module):
    """The hand-written per-sample switch: boolean masks and an index assignment."""

    def __init__(self, selector: nn.Module, branches: list[nn.Module]) -> None:
        super().__init__()
        self.selector = selector
        self.branches = nn.ModuleList(branches)

    def forward(self, x: Tensor) -> Tensor:
        index = self.selector(x)
        out = x.new_zeros(x.shape[0], self.branches[0][-1].out_features)
        for i, branch in enumerate(self.branches):
            mask = index == i
            if mask.any():
                out[mask] = branch(x[mask])
        return out


def train_step(model: nn.Module, opt: torch.optim.Optimizer, x: Tensor, y: Tensor) -> None:
    loss = nn.functional.mse_loss(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--branches", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--steps-per-round", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    d = args.dim
    selector = fl.ArgmaxSelector(d, args.branches)
    branches = [
        nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, d)) for _ in range(args.branches)
    ]
    masked = MaskedSwitch(selector, branches).to(device)
    graph = fl.Flow(nn.Identity()).switch(selector, *branches).build().to(device)
    x = torch.randn(args.batch, d, device=device)
    y = torch.randn(args.batch, d, device=device)
    torch.testing.assert_close(graph(x), masked(x))
    counts = torch.bincount(selector(x), minlength=args.branches).tolist()

    opt_masked = torch.optim.Adam(masked.parameters(), lr=1e-4)
    opt_graph = torch.optim.Adam(graph.parameters(), lr=1e-4)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def forward(model: nn.Module) -> None:
        with torch.no_grad():
            model(x)
        sync()

    def train(model: nn.Module, opt: torch.optim.Optimizer) -> None:
        train_step(model, opt, x, y)
        sync()

    cases = {
        "train step": {
            "masked PyTorch": lambda: train(masked, opt_masked),
            "flowdl switch": lambda: train(graph, opt_graph),
        },
        "forward (no_grad)": {
            "masked PyTorch": lambda: forward(masked),
            "flowdl switch": lambda: forward(graph),
        },
    }
    print(
        f"# per-sample switch: {args.branches} branches of Linear({d},{d})-GELU-Linear({d},{d}), "
        f"batch {args.batch}, samples per branch {counts}"
    )
    print(
        f"# torch {torch.__version__}, Python {platform.python_version()}, "
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} thread(s), "
        f"device {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}"
    )
    print(f"# {args.rounds} interleaved rounds x {args.steps_per_round} steps")
    for case, steps in cases.items():
        per = args.steps_per_round
        times = interleave(
            {name: repeated(step, per) for name, step in steps.items()}, args.rounds, 1, device
        )
        masked_t = Summary.of([t / per for t in times["masked PyTorch"]])
        graph_t = Summary.of([t / per for t in times["flowdl switch"]])
        ratio = paired_ratio(times["flowdl switch"], times["masked PyTorch"])
        print(
            f"{case:18s} masked {masked_t.median * 1e6:9.1f} us (± {masked_t.spread * 1e6:6.1f})  "
            f"flowdl {graph_t.median * 1e6:9.1f} us (± {graph_t.spread * 1e6:6.1f})  "
            f"ratio {ratio.median:.3f} ± {ratio.spread:.3f}"
        )


if __name__ == "__main__":
    main()
