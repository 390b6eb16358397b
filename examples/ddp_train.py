"""Train a flowdl graph on several processes with DistributedDataParallel.

    torchrun --standalone --nproc-per-node 2 examples/ddp_train.py --out ddp-run

torchrun starts one process per rank and gives each its RANK, LOCAL_RANK and
WORLD_SIZE. Every rank builds the same graph (a residual block, a two-expert gate
and a weight-shared loop), wraps it in `DistributedDataParallel` and trains on its
own share of generated data (`DistributedSampler`). CPU processes talk through gloo;
with CUDA each rank takes the GPU of its local rank and NCCL (``--cpu`` forces gloo).

The graph records the loss and collects a tagged activation every batch; `flush()`
at the end of each epoch averages those means across the ranks, so every rank holds
the same history. Rank 0 alone prints it with `fl.Monitor` and saves the checkpoint;
after a barrier every rank loads it into a freshly built model and checks that it
holds rank 0's trained weights. Each rank ends with one line, for people and tests:

    ddp_train: rank=0 world=2 backend=gloo epochs=5 loss=1.1663->0.07274 val_loss=0.0818771
    weights=match digest=909fd1b8bfb0 checkpoint=ddp-run/model.safetensors

(on one line). ``weights=differ`` (and exit status 1) means a rank's loaded weights
are not rank 0's. docs/distributed.md explains each step.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import flowdl as fl


def build_model(features: int = 8, hidden: int = 32) -> fl.Graph:
    """A residual block, a soft gate over two experts, a loop that reuses its weights."""
    block = (
        fl.Flow(nn.Linear(hidden, hidden))
        .through(nn.GELU())
        .through(nn.Linear(hidden, hidden))
        .label("block")
        .build()
    )
    refine = fl.Flow(nn.Linear(hidden, hidden)).through(nn.Tanh()).label("refine").build()
    return (
        fl.Flow(nn.Linear(features, hidden))
        .also(block)  # x + block(x)
        .through(nn.LayerNorm(hidden))
        .gate(
            fl.SoftmaxRouter(hidden, 2),
            nn.Linear(hidden, hidden),
            nn.Sequential(nn.Linear(hidden, hidden), nn.GELU()),
        )
        .tag("mixed")
        .loop(refine)
        .for_(2)
        .through(nn.Linear(hidden, 1))
        .tag("prediction")
        .build()
    )


def make_data(samples: int, features: int, seed: int) -> TensorDataset:
    """``y = sin(2 x0) + x1 x2 + x3 / 2`` plus a little noise; the same on every rank."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, features, generator=generator)
    y = torch.sin(2 * x[:, :1]) + x[:, 1:2] * x[:, 2:3] + 0.5 * x[:, 3:4]
    y = y + 0.05 * torch.randn(samples, 1, generator=generator)
    return TensorDataset(x, y)


def digest(state: Mapping[str, Tensor]) -> str:
    """The first 12 hex digits of the SHA-256 of a state dict (names and bytes, sorted)."""
    sha = hashlib.sha256()
    for name in sorted(state):
        sha.update(name.encode())
        sha.update(state[name].detach().cpu().contiguous().numpy().tobytes())
    return sha.hexdigest()[:12]


def flat(model: nn.Module) -> Tensor:
    """Every tensor of the state dict in one vector (to compare two models)."""
    return torch.cat([t.detach().reshape(-1).double() for t in model.state_dict().values()])


def start(cpu: bool) -> tuple[int, int, torch.device]:
    """Join the process group torchrun describes; this rank's device."""
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if torch.cuda.is_available() and not cpu:
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)  # before anything touches the GPU
        dist.init_process_group("nccl", device_id=device, timeout=timedelta(minutes=5))
    else:
        device = torch.device("cpu")
        dist.init_process_group("gloo", timeout=timedelta(minutes=5))
    return rank, world, device


def train(args: argparse.Namespace, rank: int, world: int, device: torch.device) -> int:
    """Train, save on rank 0, load on every rank; the exit status."""
    out = Path(args.out)
    torch.manual_seed(args.seed)  # the same weights everywhere (DDP broadcasts rank 0's anyway)
    model = build_model(args.features, args.hidden).to(device)
    ddp = DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None
    )
    optimizer = torch.optim.AdamW(ddp.parameters(), lr=args.lr)

    train_set = make_data(args.samples, args.features, seed=args.seed)
    validation_set = make_data(args.samples // 4, args.features, seed=args.seed + 1)
    train_sampler = DistributedSampler(train_set, shuffle=True, seed=args.seed, drop_last=True)
    train_loader = DataLoader(
        train_set, batch_size=args.batch_size, sampler=train_sampler, drop_last=True
    )
    validation_loader = DataLoader(
        validation_set,
        batch_size=args.batch_size,
        sampler=DistributedSampler(validation_set, shuffle=False),
    )

    monitor = None
    if rank == 0:  # one process prints; the flushed metrics are already every rank's
        out.mkdir(parents=True, exist_ok=True)
        monitor = fl.Monitor(args.epochs, title="ddp_train")
    for epoch in range(1, args.epochs + 1):
        train_sampler.set_epoch(epoch)  # a new shuffle each epoch, the same on every rank
        ddp.train()
        for x, y in train_loader:
            x, y = x.to(device), y.to(device)
            loss = nn.functional.mse_loss(ddp(x), y)
            optimizer.zero_grad()
            loss.backward()  # DDP averages the gradients across ranks here
            optimizer.step()
            model.record("loss", loss)
            model.collect("mixed")
        ddp.eval()
        with torch.no_grad():
            for x, y in validation_loader:
                x, y = x.to(device), y.to(device)
                model.record("val_loss", nn.functional.mse_loss(ddp(x), y))
        model.flush()  # on every rank: the means averaged across ranks
        if monitor is not None:
            monitor.log(epoch, model)
    if monitor is not None:
        monitor.finish()
        monitor.export_csv(out / "metrics.csv")

    path = out / "model.safetensors"
    if rank == 0:
        fl.save_checkpoint(path, ddp, optimizer, epoch=args.epochs)
    dist.barrier()  # nobody reads the file before rank 0 has written it

    torch.manual_seed(args.seed + 1 + rank)  # other weights on every rank, until loaded
    fresh = build_model(args.features, args.hidden).to(device)
    fresh_optimizer = torch.optim.AdamW(fresh.parameters(), lr=args.lr)
    report = fl.load_checkpoint(path, fresh, fresh_optimizer)
    trained = flat(model)
    dist.broadcast(trained, src=0)  # rank 0's trained weights, on every rank
    same = torch.equal(flat(fresh), trained) and report.complete and report.epoch == args.epochs

    loss, validation = model.trend("loss"), model.trend("val_loss")
    print(
        f"ddp_train: rank={rank} world={world} backend={dist.get_backend()} "
        f"epochs={args.epochs} loss={loss.values[0]:.6g}->{loss.latest:.6g} "
        f"val_loss={validation.latest:.6g} weights={'match' if same else 'differ'} "
        f"digest={digest(fresh.state_dict())} checkpoint={path}",
        flush=True,
    )
    if not same:
        print(f"rank {rank}: the loaded checkpoint does not hold rank 0's weights", file=sys.stderr)
    dist.barrier()  # every rank is done with the group before any rank takes it down
    return 0 if same else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="ddp-run", help="folder for the checkpoint and CSV")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--samples", type=int, default=4096, help="training samples in all")
    parser.add_argument("--batch-size", type=int, default=64, help="per rank")
    parser.add_argument("--features", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cpu", action="store_true", help="gloo on CPU even with CUDA")
    args = parser.parse_args(argv)
    if "RANK" not in os.environ:
        print(
            "ddp_train.py runs one process per rank under torchrun, which sets RANK and "
            "WORLD_SIZE:\n  torchrun --standalone --nproc-per-node 2 examples/ddp_train.py",
            file=sys.stderr,
        )
        return 2
    rank, world, device = start(args.cpu)
    try:
        return train(args, rank, world, device)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    status = main()
    # Everything is done and the group destroyed, but after DDP gloo's threads outlive
    # destroy_process_group (cf. pytorch/pytorch#107298), and now and then the teardown at
    # interpreter exit aborts ("terminate called without an active exception"; about one
    # run in fifteen here), which torchrun reports as a failed rank: skip that teardown.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
