"""Fast mode: `Graph.compile()` against eager PyTorch and `torch.compile` of the same model.

For each of floDl's models (from the suite in `flowdl._bench`), four arms train on
the same batches under the tuned-eager protocol, interleaved round by round in one
process: the hand-written model (eager), the flowdl graph (eager), the flowdl graph
in fast mode (``g.compile()``: its static segments compiled by Inductor), and
``torch.compile`` of the hand-written model. Every arm starts from the same
weights (deep copies). Compilation happens in the warm-up epochs, outside timing.
The report gives each arm's median epoch time and its ratio to eager PyTorch (median
and scaled MAD of the round-by-round ratios).

Run: ``python benchmarks/fast_mode.py [--models mlp,gated_routing] [--scale 0.25]``
"""

from __future__ import annotations

import argparse
import copy
import platform
import time
from functools import partial

import torch

from flowdl._bench.models import MODELS
from flowdl._bench.protocol import TUNED, Arm, interleave, make_adam
from flowdl._bench.stats import Summary, paired_ratio

DEFAULT_MODELS = "mlp,residual_tower,gated_routing,iterative_refine,feedback_fixed"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=DEFAULT_MODELS)
    parser.add_argument("--scale", type=float, default=0.25)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--backend", default="inductor", help="torch.compile backend of both compiled arms"
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    print(
        f"# fast mode, scale {args.scale}, {args.batches} batches per epoch, {args.rounds} "
        f"interleaved rounds after {args.warmup} warm-up epochs, tuned eager protocol"
    )
    print(
        f"# torch {torch.__version__}, Python {platform.python_version()}, "
        f"{platform.machine()}, {torch.get_num_threads()} thread(s), device {device}"
    )
    print("| model | PyTorch eager ms | flowdl eager | flowdl fast | torch.compile(PyTorch) |")
    print("|---|---:|---:|---:|---:|")
    for name in args.models.split(","):
        torch.manual_seed(0)
        pair = MODELS[name](args.scale, TUNED).to(device)
        batches = [pair.make_batch(device) for _ in range(args.batches)]
        fast = copy.deepcopy(pair.graph)
        fast.compile(backend=args.backend)
        compiled = torch.compile(copy.deepcopy(pair.torch_model), backend=args.backend)
        models = {
            "pytorch": pair.torch_model,
            "flowdl": pair.graph,
            "fast": fast,
            "compiled": compiled,
        }
        arms = {
            side: Arm(model, make_adam(model.parameters(), pair.lr, TUNED), pair.loss_fn, TUNED)
            for side, model in models.items()
        }
        start = time.perf_counter()
        times = interleave(
            {side: partial(arm.epoch, batches) for side, arm in arms.items()},
            args.rounds,
            args.warmup,
            device,
        )
        base = Summary.of(times["pytorch"]).median
        cells = [f"{base * 1e3:.1f}"]
        for side in ("flowdl", "fast", "compiled"):
            r = paired_ratio(times[side], times["pytorch"])
            cells.append(f"{r.median:.3f} ± {r.spread:.3f}")
        print(
            f"| {name} | " + " | ".join(cells) + f" |  <!-- {time.perf_counter() - start:.0f} s -->"
        )


if __name__ == "__main__":
    main()
