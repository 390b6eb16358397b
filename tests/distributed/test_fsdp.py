"""Sharded training of a graph with FSDP2 (`fully_shard`): two CPU ranks on gloo.

One two-rank run (`sharded`, shared by the tests of this module) trains a graph
whose layers and root are `fully_shard`-ed, each rank on its half of every batch,
next to an unsharded copy that trains on the whole batch, in float64. It then
saves a sharded checkpoint on both ranks, loads it on both into a fresh sharded
graph and into a DDP-wrapped one, takes one more step with the trained and the
resumed model, consolidates the checkpoint into one file on rank 0, and compiles
the sharded graph. The tests load the same checkpoint in this (one) process.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor
from torch.nn.parallel import DistributedDataParallel

import flowdl as fl
from tests.ranks import run_ranks, single_process_group

FEATURES, HIDDEN, BATCH, STEPS, LR = 3, 6, 8, 3, 0.01


def build_model(seed: int) -> fl.Graph:
    """Two layers around a residual block and a dense gate; float64."""
    torch.manual_seed(seed)
    return (
        fl.Flow(nn.Linear(FEATURES, HIDDEN))
        .through(nn.Tanh())
        .also(nn.Linear(HIDDEN, HIDDEN))
        .gate(fl.SoftmaxRouter(HIDDEN, 2), nn.Linear(HIDDEN, HIDDEN), nn.Linear(HIDDEN, HIDDEN))
        .through(nn.Linear(HIDDEN, 1))
        .build()
        .double()
    )


def shard(model: fl.Graph) -> fl.Graph:
    """FSDP2 as usually applied: each top-level layer on its own, then the whole graph."""
    for child in list(model.children()):
        if isinstance(child, nn.Linear):
            fully_shard(child)
    fully_shard(model)
    return model


def batch(step: int) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(step)
    x = torch.randn(BATCH, FEATURES, generator=generator, dtype=torch.float64)
    return x, torch.sin(x.sum(1, keepdim=True))


def half(tensor: Tensor, rank: int) -> Tensor:
    return tensor.chunk(2)[rank]


def step(model: nn.Module, optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor) -> None:
    loss = nn.functional.mse_loss(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def full(model: nn.Module) -> dict[str, list[float]]:
    """Every parameter, whole (gathered from the shards), as lists."""
    out = {}
    for name, p in model.named_parameters():
        value = p.full_tensor() if isinstance(p, DTensor) else p
        out[name] = value.detach().reshape(-1).tolist()
    return out


def moments(optimizer: torch.optim.Optimizer) -> list[float]:
    parts = []
    for group in optimizer.param_groups:
        for p in group["params"]:
            for name in ("exp_avg", "exp_avg_sq"):
                value = optimizer.state[p][name]
                value = value.full_tensor() if isinstance(value, DTensor) else value
                parts.append(value.reshape(-1))
    return torch.cat(parts).tolist()


def _run(rank: int, folder: Path) -> dict[str, Any]:
    started = time.perf_counter()
    reference = build_model(seed=0)
    model = shard(build_model(seed=0))
    ref_opt = torch.optim.Adam(reference.parameters(), lr=LR)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    for k in range(STEPS):
        x, y = batch(k)
        step(reference, ref_opt, x, y)  # the whole batch, one process
        step(model, optimizer, half(x, rank), half(y, rank))  # FSDP averages the halves
    out: dict[str, Any] = {"reference": full(reference), "trained": full(model)}
    out["local_shapes"] = [list(p.to_local().shape) for p in model.parameters()]

    folder = folder / "sharded"
    fl.save_sharded_checkpoint(folder, model, optimizer, epoch=STEPS, note="fsdp")
    resumed = shard(build_model(seed=1 + rank))  # other weights: the load must set them all
    resumed_opt = torch.optim.Adam(resumed.parameters(), lr=LR / 10)
    report = fl.load_sharded_checkpoint(folder, resumed, resumed_opt)
    out["report"] = [list(report.loaded), report.epoch, report.extra]
    out["loaded"] = full(resumed)
    out["moments"] = [moments(optimizer), moments(resumed_opt)]
    out["lr"] = resumed_opt.param_groups[0]["lr"]
    x, y = batch(STEPS)
    step(model, optimizer, half(x, rank), half(y, rank))  # the run that never stopped ...
    step(resumed, resumed_opt, half(x, rank), half(y, rank))  # ... and the resumed one
    out["next"] = [full(model), full(resumed)]

    ddp_model = build_model(seed=2)  # the sharded checkpoint into a replicated model
    ddp = DistributedDataParallel(ddp_model)
    fl.load_sharded_checkpoint(folder, ddp)
    out["ddp"] = full(ddp_model)

    out["refused"] = ""
    try:
        fl.save_checkpoint(folder.parent / f"single{rank}.safetensors", model)
    except fl.CheckpointError as error:
        out["refused"] = str(error)
    if rank == 0:  # one process reads every shard, the other rank does nothing
        fl.consolidate_checkpoint(folder, folder.parent / "model.safetensors", build_model(3))
    dist.barrier()

    eager = build_model(seed=0)
    compiled = shard(build_model(seed=0))
    compiled.compile(backend="eager")
    x, _ = batch(99)
    outputs = [eager(x), compiled(half(x, rank))]
    (outputs[0].sum() / 2).backward()  # the mean of the two halves' sums ...
    outputs[1].sum().backward()  # ... as FSDP averages the ranks' gradients
    grads = [
        {n: p.grad.reshape(-1).tolist() for n, p in eager.named_parameters()},
        {n: p.grad.full_tensor().reshape(-1).tolist() for n, p in compiled.named_parameters()},
    ]
    out["seconds"] = time.perf_counter() - started
    out["compiled"] = {
        "outputs": [half(outputs[0], rank).tolist(), outputs[1].tolist()],
        "grads": grads,
        "segments": compiled.compiled,
    }
    return out


@pytest.fixture(scope="module")
def sharded(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict[str, Any]], Path]:
    folder = tmp_path_factory.mktemp("fsdp")
    return run_ranks(_run, folder, world_size=2, timeout=120), folder


def close(a: dict[str, list[float]], b: dict[str, list[float]]) -> bool:
    return a.keys() == b.keys() and all(
        torch.allclose(torch.tensor(a[k]), torch.tensor(b[k]), rtol=1e-10, atol=1e-12) for k in a
    )


def test_sharded_training_equals_unsharded(sharded: Any) -> None:
    ranks, _ = sharded
    for out in ranks:
        assert close(out["trained"], out["reference"])
    assert ranks[0]["local_shapes"] != ranks[1]["local_shapes"]  # really sharded


def test_save_on_two_ranks_load_on_two(sharded: Any) -> None:
    ranks, _ = sharded
    for out in ranks:
        assert out["loaded"] == out["trained"]  # exact: the same float64 values
        assert out["moments"][0] == out["moments"][1]
        assert out["lr"] == LR  # the saved hyperparameters replace the optimizer's
        keys, epoch, extra = out["report"]
        assert keys == list(out["trained"])
        assert epoch == STEPS
        assert extra == {"epoch": STEPS, "note": "fsdp"}


def test_resume_takes_the_same_next_step(sharded: Any) -> None:
    ranks, _ = sharded
    for out in ranks:
        never_stopped, resumed = out["next"]
        assert never_stopped == resumed
        assert never_stopped != out["trained"]


def test_sharded_checkpoint_loads_into_ddp_on_two_ranks(sharded: Any) -> None:
    ranks, _ = sharded
    assert all(out["ddp"] == out["trained"] for out in ranks)


def test_load_on_one_process_reshards(sharded: Any) -> None:
    ranks, folder = sharded
    model = build_model(seed=5)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    fl.load_sharded_checkpoint(folder / "sharded", model, optimizer)
    assert full(model) == ranks[0]["trained"]
    assert moments(optimizer) == ranks[0]["moments"][0]
    x, y = batch(STEPS)
    step(model, optimizer, x, y)  # the whole batch: the two ranks' halves together
    assert close(full(model), ranks[0]["next"][0])


def test_consolidated_file_on_rank_0_loads_for_inference(sharded: Any) -> None:
    ranks, folder = sharded
    model = build_model(seed=6)
    report = fl.load_checkpoint(folder / "model.safetensors", model)
    assert report.epoch == STEPS
    assert report.extra["note"] == "fsdp"
    assert full(model) == ranks[0]["trained"]


def test_single_file_save_of_a_sharded_model_says_what_to_use(sharded: Any) -> None:
    ranks, _ = sharded
    for out in ranks:
        assert "cannot save a sharded model" in out["refused"]
        assert "fl.save_sharded_checkpoint" in out["refused"]


def test_compile_on_a_sharded_graph_computes_what_eager_does(sharded: Any) -> None:
    ranks, _ = sharded
    for out in ranks:
        compiled = out["compiled"]
        assert compiled["segments"]
        eager, sharded_out = (torch.tensor(v) for v in compiled["outputs"])
        torch.testing.assert_close(sharded_out, eager, rtol=1e-12, atol=1e-12)
        assert close(compiled["grads"][1], compiled["grads"][0])


def test_a_missing_rank_file_is_refused(sharded: Any, tmp_path: Path) -> None:
    _, folder = sharded
    copy = tmp_path / "copy"
    shutil.copytree(folder / "sharded", copy)
    (copy / "shard-00002-model-00001-of-00001.safetensors").unlink()
    model = build_model(seed=7)
    before = full(model)
    with pytest.raises(fl.CheckpointError, match="a shard file is missing"):
        fl.load_sharded_checkpoint(copy, model)
    assert full(model) == before


def test_compile_runs_separately_sharded_layers_and_nested_graphs_eagerly(tmp_path: Path) -> None:
    def nested() -> fl.Graph:
        torch.manual_seed(0)
        inner = fl.Flow(nn.Linear(4, 4)).through(nn.Tanh()).label("inner").build()
        return (
            fl.Flow(nn.Linear(3, 4))
            .through(inner)
            .also(nn.Linear(4, 4))
            .through(nn.Linear(4, 1))
            .build()
            .double()
        )

    with single_process_group(tmp_path):  # FSDP2 on one rank: the same hooks, no spawn
        eager, model = nested(), nested()
        fully_shard(model.inner)
        fully_shard(model.Linear_0)
        fully_shard(model)
        model.compile(backend="eager")
        x = torch.randn(5, 3, dtype=torch.float64)
        expected, got = eager(x), model(x)
        expected.sum().backward()
        got.sum().backward()
        kinds = [type(item).__name__ for item in model._fast or ()]
        inner_kinds = [type(item).__name__ for item in model.inner._fast or ()]
        pairs = zip(eager.parameters(), model.parameters(), strict=True)
        grads = [(p.grad, q.grad.full_tensor()) for p, q in pairs]
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    for want, have in grads:
        torch.testing.assert_close(have, want, rtol=1e-12, atol=1e-12)
    assert kinds == ["Step", "Step", "Segment"]  # the sharded layer, the sharded graph, the rest
    assert inner_kinds == ["Segment"]  # the nested graph's own nodes are compiled
