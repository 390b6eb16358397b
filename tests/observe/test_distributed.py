"""`flush` under torch.distributed: two CPU processes on gloo share one history."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

import flowdl as fl
from tests.ranks import run_ranks


def _model() -> fl.Graph:
    encoder = fl.Flow(nn.Identity()).tag("hidden").label("encoder").build()
    return fl.Flow(encoder).through(lambda x: 2 * x).tag("out").build()


def _worker(rank: int, folder: Path) -> dict[str, object]:
    out: dict[str, object] = {}
    g = _model()
    # 1. the same names on both ranks, different values: the means are averaged
    for x in ([1.0, 3.0], [5.0]) if rank == 0 else ([10.0], [20.0, 30.0]):
        for v in x:
            g(torch.tensor([v]))
            g.collect("out")
            g.collect_at("encoder.hidden")
        g.record("loss", float(rank))
        out[f"flush_{len(out)}"] = g.flush()
    out["out"] = list(g.trend("out").values)
    out["hidden"] = list(g.trend_at("encoder.hidden").values)
    out["loss"] = list(g.trend("loss").values)
    out["latest"] = g.latest_metrics()
    # 2. different names: every rank gets the same clear error, nothing is flushed
    g.record("loss", 1.0)
    if rank == 1:
        g.record("extra", 1.0)
    try:
        g.flush()
    except RuntimeError as error:
        out["mismatch"] = str(error)
    out["loss_still_buffered"] = g.collected("loss")
    # 3. one rank with nothing at all still meets the other in the collective
    g.flush("loss", all_ranks=False)
    g.flush("extra", all_ranks=False)
    if rank == 0:
        g.record("loss", 1.0)
    try:
        g.flush()
    except RuntimeError as error:
        out["empty_rank"] = str(error)
    g.flush(all_ranks=False)
    # 4. after the errors the group still works
    g.record("loss", 2.0 + rank)
    out["after"] = g.flush()
    # 5. nothing anywhere: a no-op on every rank
    out["nothing"] = g.flush()
    return out


def test_two_ranks_flush_the_same_history(tmp_path: Path) -> None:
    results = run_ranks(_worker, tmp_path)
    zero, one = results
    # epoch 1: rank 0 means out 4, hidden 2; rank 1 out 20, hidden 10 -> 12, 6
    # epoch 2: rank 0 out 10, hidden 5; rank 1 out 50, hidden 25 -> 30, 15
    for r in results:
        assert r["out"] == [12.0, 30.0]
        assert r["hidden"] == [6.0, 15.0]
        assert r["loss"] == [0.5, 0.5]
        assert r["flush_0"] == {"out": 12.0, "encoder.hidden": 6.0, "loss": 0.5}
        assert r["latest"] == {"out": 30.0, "loss": 0.5, "encoder.hidden": 15.0}
        assert r["loss_still_buffered"] == [1.0]
        assert r["after"] == {"loss": 2.5}
        assert r["nothing"] == {}
    assert "rank 0: loss\n  rank 1: extra, loss" in zero["mismatch"]
    assert zero["mismatch"].startswith("g.flush() on rank 0: the ranks have different names")
    assert one["mismatch"].startswith("g.flush() on rank 1: the ranks have different names")
    assert "all_ranks=False" in zero["mismatch"]
    assert "rank 0: loss\n  rank 1: nothing" in one["empty_rank"]
