"""`flush_timings` under torch.distributed: two CPU processes on gloo share one history."""

from __future__ import annotations

import json
import math
import time
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import flowdl as fl
from flowdl._profile.profile import Profile


def _worker(rank: int, folder: str) -> None:
    dist.init_process_group(
        "gloo",
        init_method=f"file://{folder}/store",
        rank=rank,
        world_size=2,
        timeout=timedelta(seconds=30),
    )
    try:
        out: dict[str, object] = {}
        g = fl.Flow(nn.Linear(4, 4)).tag("hidden").through(nn.Tanh()).tag("act").build()
        profiles: list[Profile] = []
        g.on_profile(profiles.append)
        g.enable_profiling()
        for _ in range(2 + rank):  # the ranks time different numbers of steps
            g(torch.randn(8, 4))
            g.collect_timings()
        out["local"] = {
            tag: math.fsum(p.timing(tag) for p in profiles) / len(profiles)
            for tag in ("hidden", "act")
        }
        out["flushed"] = g.flush_timings()
        out["history"] = list(g.timing_trend("hidden").values)
        # different names on the two ranks: the same clear error everywhere
        g(torch.randn(8, 4))
        g.collect_timings("hidden" if rank == 0 else "act")
        try:
            g.flush_timings()
        except RuntimeError as error:
            out["mismatch"] = str(error)
        out["own"] = sorted(g.flush_timings(all_ranks=False))
        Path(folder, f"rank{rank}.json").write_text(json.dumps(out))
    finally:
        dist.destroy_process_group()


def test_two_ranks_flush_the_same_timing_history(tmp_path: Path) -> None:
    context = mp.start_processes(
        _worker, args=(str(tmp_path),), nprocs=2, join=False, start_method="spawn"
    )
    deadline = time.monotonic() + 120
    while not context.join(timeout=1):
        assert time.monotonic() < deadline, "the ranks hung"
    zero, one = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    for tag in ("hidden", "act"):
        expected = (zero["local"][tag] + one["local"][tag]) / 2
        for result in (zero, one):
            assert math.isclose(result["flushed"][tag], expected, rel_tol=1e-12)
    assert zero["flushed"] == one["flushed"]
    assert zero["history"] == one["history"] == [zero["flushed"]["hidden"]]
    assert zero["mismatch"].startswith("g.flush_timings() on rank 0: the ranks have different")
    assert "rank 0: hidden\n  rank 1: act" in one["mismatch"]
    assert zero["own"] == ["hidden"]
    assert one["own"] == ["act"]
