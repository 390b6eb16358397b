"""Averaging the epoch means of every rank under `torch.distributed`.

Every rank must flush the same names: each rank first shares the list of names it
is about to flush (as UTF-8 bytes, no pickling), and when the lists differ every
rank raises the same error, naming what each rank had, instead of waiting forever
in a collective the others never join or averaging unrelated values.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from flowdl._errors import FlowdlError

__all__ = ["RankMismatchError", "average_across_ranks", "world_size"]


class RankMismatchError(FlowdlError, RuntimeError):
    """The ranks of a distributed run flushed different names."""


def world_size() -> int:
    """The number of ranks of the default process group (1 when not distributed)."""
    if not dist.is_available() or not dist.is_initialized():
        return 1
    return int(dist.get_world_size())


def _device() -> torch.device:
    """Where the default group's collectives take their tensors."""
    backend = str(dist.get_backend())
    if "nccl" in backend and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _gather_text(text: str, device: torch.device) -> list[str]:
    """`text` from every rank, in rank order."""
    world = dist.get_world_size()
    data = torch.tensor(list(text.encode()), dtype=torch.uint8, device=device)
    length = torch.tensor([data.numel()], dtype=torch.int64, device=device)
    lengths = [torch.zeros_like(length) for _ in range(world)]
    dist.all_gather(lengths, length)
    longest = max(int(n.item()) for n in lengths)
    padded = torch.zeros(longest, dtype=torch.uint8, device=device)
    padded[: data.numel()] = data
    chunks = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(chunks, padded)
    return [
        bytes(chunk[: int(n.item())].tolist()).decode()
        for chunk, n in zip(chunks, lengths, strict=True)
    ]


def average_across_ranks(means: dict[str, float], where: str = "flush()") -> dict[str, float]:
    """The mean over ranks of each of `means` (every rank gets the same numbers).

    A collective: every rank of the default process group must call it, also a
    rank with nothing to flush.

    Raises:
        RankMismatchError: the ranks have different names (on every rank).
    """
    world = world_size()
    if world == 1:
        return dict(means)
    device = _device()
    names = sorted(means)
    everyone = _gather_text("\n".join(names), device)
    if any(other != everyone[0] for other in everyone):
        rank = dist.get_rank()
        lines = [
            f"  rank {r}: {', '.join(text.split(chr(10))) if text else 'nothing'}"
            for r, text in enumerate(everyone)
        ]
        raise RankMismatchError(
            f"{where} on rank {rank}: the ranks have different names to flush\n"
            + "\n".join(lines)
            + "\n  fix: collect or record the same names on every rank before each flush "
            "(the means of each name are averaged across ranks), or flush one rank's own "
            "names with flush(..., all_ranks=False)"
        )
    if not names:
        return {}
    summed = torch.tensor([means[n] for n in names], dtype=torch.float64, device=device)
    dist.all_reduce(summed)
    averaged = dict(zip(names, (v / world for v in summed.tolist()), strict=True))
    return {name: averaged[name] for name in means}
