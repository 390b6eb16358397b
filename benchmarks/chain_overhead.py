"""Executor overhead: a chain graph against the same `nn.Sequential` (see flowdl._bench.overhead).

The same measurement closes ``python -m flowdl bench``; this script runs it alone.

Run: ``python benchmarks/chain_overhead.py [--width 64] [--batch 32] [--nodes 20] [--rounds 30]``
"""

from __future__ import annotations

import argparse
import platform

import torch

from flowdl._bench.overhead import measure_overhead


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--calls-per-round", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(
        f"# {args.nodes}-node chain (Linear({args.width}, {args.width}) / ReLU), batch {args.batch}"
    )
    print(
        f"# torch {torch.__version__}, Python {platform.python_version()}, "
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} thread(s)"
    )
    print(f"# {args.rounds} interleaved rounds x {args.calls_per_round} calls; median (scaled MAD)")
    results = measure_overhead(
        args.width, args.batch, args.nodes, args.rounds, args.calls_per_round
    )
    for r in results:
        print(
            f"{r.case:18s} sequential {r.sequential.median * 1e6:8.1f} us "
            f"({r.sequential.spread * 1e6:5.1f})  graph {r.graph.median * 1e6:8.1f} us "
            f"({r.graph.spread * 1e6:5.1f})  ratio {r.ratio.median:.3f}  "
            f"overhead {r.per_node.median * 1e6:+.2f} us/node ({r.per_node.spread * 1e6:.2f})"
        )


if __name__ == "__main__":
    main()
