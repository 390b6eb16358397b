"""Peak memory and time of `fl.save_checkpoint` / `fl.load_checkpoint` against safetensors.

The model is ``--layers`` square ``Linear(width, width)`` layers sized so that its
weights take ``--mb`` MiB of float32 (1024: a 1 GiB model), with Adam's state after one
step when ``--adam`` is given (the file is then about three times the model). Five
arms, each measured in a fresh subprocess so that one arm's memory never shows in
another's:

- ``save flowdl``: ``fl.save_checkpoint(path, model, optimizer)``;
- ``save safetensors``: ``safetensors.torch.save_file`` of the same tensors (the model's
  state dict and Adam's moments), then an ``fsync`` of the file (flowdl's save fsyncs);
- ``load flowdl``: ``fl.load_checkpoint(path, model, optimizer)`` into a freshly
  built model and a fresh Adam;
- ``load safetensors``: ``safetensors.torch.load_file`` then ``model.load_state_dict``
  (and ``optimizer.load_state_dict`` of the state rebuilt from the loaded tensors).
  ``load_file`` maps the file: a tensor it returns is read from the file when it is
  first used, so this arm does not read what ``load_state_dict`` does not copy (Adam's
  moments, which the optimizer keeps as they are);
- ``load safetensors+read``: the same, then one byte of every page of every loaded
  tensor touched, which reads them in as the first optimizer step would.

Each round runs the five arms (the save arms' order alternating between rounds), the
load arms reading the files the save arms of the same round wrote (so both are in the
page cache). Time is the operation's wall time. Extra memory is the process's peak
resident set during the operation above the larger of the resident set before and
after it (what the model and optimizer hold afterwards is theirs, not the operation's):
the peak is reset just before the operation through ``/proc/self/clear_refs`` where
Linux allows it, and sampled every millisecond by a thread otherwise. The report gives
medians with their scaled MAD and the paired, round-by-round ratios.

Run: ``python benchmarks/checkpoint_io.py [--mb 1024] [--layers 16] [--adam]
[--rounds 5] [--dir /tmp]``
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ARMS = (
    "save flowdl",
    "save safetensors",
    "load flowdl",
    "load safetensors",
    "load safetensors+read",
)


def build(mb: float, layers: int, adam: bool, seed: int) -> tuple[Any, Any]:
    """The model (and Adam after one step, if asked) of about `mb` MiB of weights."""
    import torch
    from torch import nn

    width = max(1, int(math.sqrt(mb * 2**20 / 4 / layers)))
    torch.manual_seed(seed)
    model = nn.Sequential(*(nn.Linear(width, width) for _ in range(layers)))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3) if adam else None
    if optimizer is not None and seed == 0:  # the saved run has state; a fresh one does not
        for parameter in model.parameters():
            parameter.grad = torch.full_like(parameter, 1e-3)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return model, optimizer


def flat_tensors(model: Any, optimizer: Any) -> dict[str, Any]:
    """The model's state dict and the optimizer's state tensors, by name (not copied)."""
    tensors = dict(model.state_dict())
    if optimizer is not None:
        for index, state in optimizer.state_dict()["state"].items():
            for key, value in state.items():
                tensors[f"optimizer.{index}.{key}"] = value
    return tensors


def rebuilt_optimizer_state(tensors: dict[str, Any], optimizer: Any) -> dict[str, Any]:
    """An Adam state dict made from `flat_tensors`' names (the plain-PyTorch resume)."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            _, index, key = name.split(".")
            state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": optimizer.state_dict()["param_groups"]}


class PeakMemory:
    """The peak resident set of this process during a block, in bytes."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.method = "clear_refs"

    def __enter__(self) -> PeakMemory:
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        except OSError:
            self.method = "sampling every 1 ms"
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss())
            time.sleep(0.001)

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        else:
            self.peak = _status("VmHWM")
        self.peak = max(self.peak, rss())


def rss() -> int:
    """The current resident set, in bytes."""
    import psutil

    return int(psutil.Process().memory_info().rss)


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise OSError(f"no {field} in /proc/self/status")


def child(arm: str, args: argparse.Namespace) -> dict[str, float]:
    """Run one arm in this (fresh) process; return its seconds and extra bytes."""
    import safetensors.torch
    import torch

    import flowdl as fl

    if not args.same_process:
        torch.set_num_threads(1)
    saving = arm.startswith("save")
    model, optimizer = build(args.mb, args.layers, args.adam, seed=0 if saving else 1)
    flowdl_file = Path(args.dir) / "flowdl.safetensors"
    plain_file = Path(args.dir) / "plain.safetensors"
    operation: Callable[[], None]
    if arm == "save flowdl":
        operation = lambda: fl.save_checkpoint(flowdl_file, model, optimizer)  # noqa: E731
    elif arm == "save safetensors":

        def operation() -> None:
            safetensors.torch.save_file(flat_tensors(model, optimizer), plain_file)
            with open(plain_file, "rb+") as file:
                os.fsync(file.fileno())

    elif arm == "load flowdl":
        operation = lambda: fl.load_checkpoint(flowdl_file, model, optimizer)  # noqa: E731
    else:

        def operation() -> None:
            tensors = safetensors.torch.load_file(plain_file)
            model.load_state_dict({k: v for k, v in tensors.items() if "optimizer." not in k})
            if optimizer is not None:
                optimizer.load_state_dict(rebuilt_optimizer_state(tensors, optimizer))
            if arm.endswith("+read"):
                for tensor in tensors.values():
                    if tensor.numel():
                        tensor.reshape(-1).view(torch.uint8)[::4096].sum()

    before = rss()
    start = time.perf_counter()
    with PeakMemory() as peak:
        operation()
    seconds = time.perf_counter() - start
    after = rss()
    size = (flowdl_file if "flowdl" in arm else plain_file).stat().st_size
    return {"seconds": seconds, "extra": peak.peak - max(before, after), "before": before,
            "after": after, "peak": peak.peak, "file": size, "method": peak.method}  # fmt: skip


def run_arm(arm: str, args: argparse.Namespace) -> dict[str, Any]:
    if args.same_process:  # for the toy-size test: no fresh process, figures not comparable
        return child(arm, args)
    command = [sys.executable, __file__, "--child", arm, "--mb", str(args.mb),
               "--layers", str(args.layers), "--dir", args.dir]  # fmt: skip
    if args.adam:
        command.append("--adam")
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{arm} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=1024.0, help="MiB of model weights")
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--adam", action="store_true", help="save and load Adam's state too")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dir", default=None, help="where the files go (default: a temp dir)")
    parser.add_argument("--same-process", action="store_true",
                        help="run every arm in this process (a quick check of the code; the "
                        "memory figures then mean nothing)")  # fmt: skip
    parser.add_argument("--child", choices=ARMS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args)))
        return
    from flowdl._bench.stats import Summary, paired_ratio

    with tempfile.TemporaryDirectory(dir=args.dir) as directory:
        args.dir = directory
        results: dict[str, list[dict[str, Any]]] = {arm: [] for arm in ARMS}
        for round_ in range(args.rounds):
            saves = ARMS[:2] if round_ % 2 == 0 else ARMS[1::-1]
            loads = ARMS[2:] if round_ % 2 == 0 else ARMS[:1:-1]  # the load arms, both ways
            for arm in (*saves, *loads):
                results[arm].append(run_arm(arm, args))
    mib = 2**20
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.system()}, "
          f"python {platform.python_version()}; model {args.mb:g} MiB of float32 weights in "
          f"{args.layers} layers{' + Adam state' if args.adam else ''}; {args.rounds} rounds; "
          f"peak by {results[ARMS[0]][0]['method']}")  # fmt: skip
    print(f"files: flowdl {results['save flowdl'][0]['file'] / mib:.0f} MiB, safetensors "
          f"{results['save safetensors'][0]['file'] / mib:.0f} MiB")  # fmt: skip
    print()
    print("| arm | time s (median ± MAD) | extra peak MiB (median ± MAD) |")
    print("|---|---|---|")
    for arm in ARMS:
        t = Summary.of([r["seconds"] for r in results[arm]])
        m = Summary.of([r["extra"] / mib for r in results[arm]])
        print(f"| {arm} | {t.median:.3f} ± {t.spread:.3f} | {m.median:.0f} ± {m.spread:.0f} |")
    print()
    print("| ratio | time (paired, median ± MAD) | extra memory |")
    print("|---|---|---|")
    pairs = (("save flowdl", "save safetensors"), ("load flowdl", "load safetensors"),
             ("load flowdl", "load safetensors+read"))  # fmt: skip
    for mine_arm, their_arm in pairs:
        ours, theirs = results[mine_arm], results[their_arm]
        t = paired_ratio([r["seconds"] for r in ours], [r["seconds"] for r in theirs])
        mine = Summary.of([r["extra"] / mib for r in ours]).median
        base = Summary.of([r["extra"] / mib for r in theirs]).median
        ratio = f"{mine / base:.2f}" if base > 0 else "n/a"
        print(f"| {mine_arm} ÷ {their_arm} | {t.median:.2f} ± {t.spread:.2f} | "
              f"{mine:.0f} MiB ÷ {base:.0f} MiB = {ratio} |")  # fmt: skip


if __name__ == "__main__":
    main()
