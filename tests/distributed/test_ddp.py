"""Data-parallel training of a graph: two CPU ranks on gloo, and the example under torchrun.

One two-rank run (`trained`, shared by the tests of this module) trains a graph
wrapped in `DistributedDataParallel` on a `DistributedSampler`'s shares, records
and collects every step, flushes every epoch, saves a checkpoint on rank 0 and
loads it on both ranks. The tests check it against a single process that trains
the same model on the union of the two ranks' batches, in float64. The same two
processes then train a recurrent graph (forward-reference state) under DDP. The last
test runs ``examples/ddp_train.py`` under torchrun.
"""

from __future__ import annotations

import copy
import hashlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import flowdl as fl
from tests.examples.support import EXAMPLES, load_example
from tests.ranks import run_ranks

FEATURES, HIDDEN, SAMPLES, BATCH, EPOCHS = 3, 6, 32, 4, 3
LR, MOMENTUM = 0.05, 0.9
STEPS_PER_EPOCH = SAMPLES // 2 // BATCH


def dataset() -> TensorDataset:
    """Sample indices (to see who got what), inputs and targets, in float64."""
    generator = torch.Generator().manual_seed(1234)
    x = torch.randn(SAMPLES, FEATURES, generator=generator, dtype=torch.float64)
    y = torch.tanh(x[:, :1] * x[:, 1:2]) + x[:, 2:3]
    return TensorDataset(torch.arange(SAMPLES), x, y)


def build_model(seed: int) -> fl.Graph:
    """A residual block, then a soft gate over two experts; float64."""
    torch.manual_seed(seed)
    residual = fl.Flow(nn.Linear(HIDDEN, HIDDEN)).through(nn.Tanh()).label("residual").build()
    return (
        fl.Flow(nn.Linear(FEATURES, HIDDEN))
        .also(residual)
        .tag("hidden")
        .gate(fl.SoftmaxRouter(HIDDEN, 2), nn.Linear(HIDDEN, HIDDEN), nn.Linear(HIDDEN, HIDDEN))
        .through(nn.Linear(HIDDEN, 1))
        .build()
        .double()
    )


def vector(model: nn.Module) -> list[float]:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).tolist()


def momentum(optimizer: torch.optim.Optimizer) -> list[float]:
    buffers = [optimizer.state[p]["momentum_buffer"] for p in optimizer.param_groups[0]["params"]]
    return torch.cat([b.reshape(-1) for b in buffers]).tolist()


def sgd_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor) -> Tensor:
    loss = nn.functional.mse_loss(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss


def _train(rank: int, folder: Path) -> dict[str, Any]:
    data = dataset()
    model = build_model(seed=100 + rank)  # other weights on each rank: DDP must sync them
    initial = vector(model)
    ddp = DistributedDataParallel(model)
    synced = vector(model)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=LR, momentum=MOMENTUM)
    sampler = DistributedSampler(data, shuffle=True, seed=7)
    loader = DataLoader(data, batch_size=BATCH, sampler=sampler)
    steps, flushed = [], []
    for epoch in range(EPOCHS):
        sampler.set_epoch(epoch)
        for index, x, y in loader:
            loss = sgd_step(ddp, optimizer, x, y)
            model.record("loss", loss)
            model.collect("hidden")
            steps.append({"epoch": epoch, "indices": index.tolist(), "params": vector(model)})
        flushed.append(model.flush())

    path = folder / "model.safetensors"
    if rank == 0:
        fl.save_checkpoint(path, ddp, optimizer, epoch=EPOCHS)
    dist.barrier()
    saved_momentum = momentum(optimizer)
    fresh = build_model(seed=200 + rank)
    fresh_ddp = DistributedDataParallel(fresh)  # rank 0's *fresh* weights, not the trained ones
    before_load = vector(fresh)
    fresh_optimizer = torch.optim.SGD(fresh_ddp.parameters(), lr=LR, momentum=MOMENTUM)
    report = fl.load_checkpoint(path, fresh_ddp, fresh_optimizer)
    loaded, loaded_momentum = vector(fresh), momentum(fresh_optimizer)
    sampler.set_epoch(EPOCHS)
    _, x, y = next(iter(loader))
    sgd_step(ddp, optimizer, x, y)  # the run that never stopped ...
    sgd_step(fresh_ddp, fresh_optimizer, x, y)  # ... and the one resumed from the file
    return {
        "initial": initial,
        "synced": synced,
        "steps": steps,
        "flushed": flushed,
        "histories": {name: list(model.trend(name).values) for name in ("loss", "hidden")},
        "saved_momentum": saved_momentum,
        "report": {"complete": report.complete, "epoch": report.epoch, "loaded": report.loaded},
        "before_load": before_load,
        "loaded": loaded,
        "loaded_momentum": loaded_momentum,
        "next_step": {"original": vector(model), "resumed": vector(fresh)},
    }


def _worker(rank: int, folder: Path) -> dict[str, Any]:
    """One start of two processes (the slow part) for both runs."""
    return {"train": _train(rank, folder), "state": _state(rank)}


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return run_ranks(_worker, tmp_path_factory.mktemp("ddp"))


@pytest.fixture(scope="module")
def trained(ranks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [result["train"] for result in ranks]


@pytest.fixture(scope="module")
def reference(trained: list[dict[str, Any]]) -> dict[str, Any]:
    """One process, one model, each step on both ranks' batches together.

    With equal batches, DDP's gradient (the mean over ranks of each rank's mean-loss
    gradient) is the gradient of the mean loss over the union of the batches. On the
    way it computes each rank's loss and `hidden` mean, as the ranks should have.
    """
    data = dataset()
    model = build_model(seed=100)  # rank 0's initial weights, which DDP broadcasts
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    params, losses, hidden = [], [[], []], [[], []]
    for zero, one in zip(trained[0]["steps"], trained[1]["steps"], strict=True):
        batches = [zero["indices"], one["indices"]]
        _, x, y = data[torch.tensor(batches[0] + batches[1])]
        with torch.no_grad():
            out = model(x)
            for rank in (0, 1):
                part = slice(rank * BATCH, (rank + 1) * BATCH)
                losses[rank].append(nn.functional.mse_loss(out[part], y[part]).item())
                hidden[rank].append(model.tagged("hidden")[part].mean().item())
        sgd_step(model, optimizer, x, y)
        params.append(vector(model))
    return {
        "initial": vector(build_model(seed=100)),
        "params": params,
        "losses": losses,
        "hidden": hidden,
        "momentum": momentum(optimizer),
    }


def epoch_means(values: list[float]) -> list[float]:
    return [
        sum(values[e * STEPS_PER_EPOCH : (e + 1) * STEPS_PER_EPOCH]) / STEPS_PER_EPOCH
        for e in range(EPOCHS)
    ]


def test_ddp_gives_every_rank_rank_0s_initial_weights(trained: list[dict[str, Any]]) -> None:
    zero, one = trained
    assert zero["initial"] != one["initial"]  # built with other seeds ...
    assert zero["synced"] == one["synced"] == zero["initial"]  # ... and synced by DDP


def test_the_ranks_see_different_halves_of_the_data(trained: list[dict[str, Any]]) -> None:
    zero, one = trained
    assert len(zero["steps"]) == len(one["steps"]) == EPOCHS * STEPS_PER_EPOCH
    for epoch in range(EPOCHS):
        seen = [
            [i for step in r["steps"] if step["epoch"] == epoch for i in step["indices"]]
            for r in trained
        ]
        assert not set(seen[0]) & set(seen[1])
        assert sorted(seen[0] + seen[1]) == list(range(SAMPLES))
    first_epoch = [[s["indices"] for s in r["steps"][:STEPS_PER_EPOCH]] for r in trained]
    second_epoch = [
        [s["indices"] for s in r["steps"][STEPS_PER_EPOCH : 2 * STEPS_PER_EPOCH]] for r in trained
    ]
    assert first_epoch != second_epoch  # set_epoch reshuffles


def test_the_ranks_hold_identical_parameters_after_every_step(
    trained: list[dict[str, Any]],
) -> None:
    for step, (zero, one) in enumerate(zip(trained[0]["steps"], trained[1]["steps"], strict=True)):
        assert zero["params"] == one["params"], f"step {step}: the ranks' parameters differ"
    assert trained[0]["steps"][0]["params"] != trained[0]["synced"]  # and they do train


def test_ddp_trains_as_one_process_on_both_batches(
    trained: list[dict[str, Any]], reference: dict[str, Any]
) -> None:
    assert reference["initial"] == trained[0]["initial"]
    for step, (got, want) in enumerate(zip(trained[0]["steps"], reference["params"], strict=True)):
        torch.testing.assert_close(
            torch.tensor(got["params"]), torch.tensor(want), rtol=0, atol=1e-12,
            msg=lambda text, step=step: f"step {step}: {text}",
        )  # fmt: skip


def test_the_loss_falls(trained: list[dict[str, Any]]) -> None:
    history = trained[0]["histories"]["loss"]
    assert len(history) == EPOCHS
    assert history[-1] < 0.8 * history[0]


def test_flushed_histories_are_the_mean_of_the_rank_means(
    trained: list[dict[str, Any]], reference: dict[str, Any]
) -> None:
    zero, one = trained
    assert zero["histories"] == one["histories"]
    assert zero["flushed"] == one["flushed"]
    for name, per_rank in (("loss", reference["losses"]), ("hidden", reference["hidden"])):
        rank_means = [epoch_means(values) for values in per_rank]
        assert all(a != pytest.approx(b, rel=1e-3) for a, b in zip(*rank_means, strict=True))
        expected = [(a + b) / 2 for a, b in zip(*rank_means, strict=True)]
        assert zero["histories"][name] == pytest.approx(expected, rel=1e-10, abs=1e-12), name
        assert [f[name] for f in zero["flushed"]] == zero["histories"][name]


def test_a_checkpoint_saved_by_rank_0_loads_on_both_ranks(
    trained: list[dict[str, Any]], reference: dict[str, Any]
) -> None:
    saved = trained[0]["steps"][-1]["params"]
    torch.testing.assert_close(
        torch.tensor(trained[0]["saved_momentum"]), torch.tensor(reference["momentum"]),
        rtol=0, atol=1e-12,
    )  # fmt: skip
    for rank, result in enumerate(trained):
        assert result["report"]["complete"], rank
        assert result["report"]["epoch"] == EPOCHS
        assert result["report"]["loaded"] == list(build_model(seed=0).state_dict()), rank
        assert result["before_load"] != saved  # a fresh model, with other weights
        assert result["loaded"] == saved, f"rank {rank} did not get rank 0's weights"
        assert result["loaded_momentum"] == trained[0]["saved_momentum"], rank
        next_step = result["next_step"]
        assert next_step["resumed"] == next_step["original"], rank  # an exact resume
    assert trained[0]["next_step"] == trained[1]["next_step"]
    assert trained[0]["next_step"]["original"] != saved


def build_recurrent() -> fl.Graph:
    """``state = tanh(W x + state)``, the state read from the previous call."""
    torch.manual_seed(300)
    return (
        fl.Flow(nn.Linear(FEATURES, HIDDEN))
        .through(fl.StateAdd())
        .using("state")
        .through(nn.Tanh())
        .tag("state")
        .through(nn.Linear(HIDDEN, 1))
        .build()
        .double()
    )


def _state(rank: int) -> dict[str, Any]:
    generator = torch.Generator().manual_seed(rank)  # each rank its own sequences
    model = build_recurrent()
    twin = copy.deepcopy(model)  # the same graph without DDP, on this rank's data only
    ddp = DistributedDataParallel(model)
    out = {}
    for mode, unroll in (("detached", 1), ("backprop", 3)):
        model.backprop_state = twin.backprop_state = mode == "backprop"
        model.reset_state()
        twin.reset_state()
        gaps, local_gaps = [], []
        for _ in range(3):
            xs = [torch.randn(BATCH, FEATURES, generator=generator, dtype=torch.float64)
                  for _ in range(unroll)]  # fmt: skip
            for graph in (ddp, twin):  # several calls, one backward: truncated BPTT
                sum(graph(x).pow(2).mean() for x in xs).backward()
            for p, q in zip(model.parameters(), twin.parameters(), strict=True):
                assert p.grad is not None
                assert q.grad is not None
                expected = q.grad.clone()
                dist.all_reduce(expected)
                expected /= 2  # the mean of the ranks' gradients
                gaps.append((p.grad - expected).abs().max().item())
                local_gaps.append((p.grad - q.grad).abs().max().item())
            with torch.no_grad():
                for p, q in zip(model.parameters(), twin.parameters(), strict=True):
                    p -= LR * p.grad
                    q.copy_(p)
                    p.grad = q.grad = None
            model.detach_state()
            twin.detach_state()
        out[mode] = {
            "gap": max(gaps),
            "local_gap": max(local_gaps),
            "state": model.tagged("state").tolist(),
            "twin_state": twin.tagged("state").tolist(),
        }
    return out


def test_forward_reference_state_under_ddp(ranks: list[dict[str, Any]]) -> None:
    """Each rank keeps its own state; gradients across calls are averaged like any other."""
    zero, one = (result["state"] for result in ranks)
    for mode in ("detached", "backprop"):
        for rank, result in enumerate((zero[mode], one[mode])):
            assert result["gap"] < 1e-12, (mode, rank)  # DDP's gradient: the ranks' mean
            assert result["local_gap"] > 1e-6, (mode, rank)  # ... which is not this rank's
            assert result["state"] == result["twin_state"], (mode, rank)
        assert zero[mode]["state"] != one[mode]["state"], mode  # not synchronised


def test_the_example_trains_under_torchrun(tmp_path: Path) -> None:
    out = tmp_path / "run"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "--tee", "3", "--log-dir", str(tmp_path / "logs"),
        str(EXAMPLES / "ddp_train.py"), "--cpu", "--out", str(out),
        "--epochs", "2", "--samples", "512", "--batch-size", "32", "--hidden", "16",
        "--lr", "0.01",
    ]  # fmt: skip
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "PYTHONFAULTHANDLER": "1",
        },  # a crash shows its stack
        start_new_session=True,  # torchrun and its workers: one group to stop on a hang
    )
    try:
        stdout, stderr = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"torchrun did not finish in 120s\n{stdout}\n{stderr}", pytrace=False)
    output = f"----- stdout -----\n{stdout}\n----- stderr -----\n{stderr}"
    assert process.returncode == 0, output

    finals = {
        int(fields["rank"]): fields
        for fields in (
            dict(re.findall(r"(\w+)=(\S+)", line.split("ddp_train: ", 1)[1]))
            for line in stdout.splitlines()
            if "ddp_train: rank=" in line
        )
    }
    assert sorted(finals) == [0, 1], output
    for fields in finals.values():
        assert (fields["world"], fields["backend"]) == ("2", "gloo"), output
        assert fields["weights"] == "match", output
    saved = checkpoint_digest(out / "model.safetensors")
    assert finals[0]["digest"] == finals[1]["digest"] == saved, output
    assert finals[0]["loss"] == finals[1]["loss"]  # the flushed history: averaged, the same
    first, last = (float(v) for v in finals[0]["loss"].split("->"))
    assert last < first

    monitor = [line for line in stdout.splitlines() if re.search(r"\bepoch [12]/2\b|done: ", line)]
    assert len(monitor) == 3, output  # two epochs and the summary, printed once ...
    assert all(line.startswith("[default0]:") for line in monitor), output  # ... by rank 0
    assert len((out / "metrics.csv").read_text().splitlines()) == 3  # a header, two epochs
    info = fl.checkpoint_info(out / "model.safetensors")
    assert info.epoch == 2
    assert info.structural_hash == fl.structural_hash(
        load_example("ddp_train").build_model(features=8, hidden=16)
    )


def checkpoint_digest(path: Path) -> str:
    """The example's digest of the model tensors in a checkpoint, read independently."""
    tensors = safetensors.torch.load_file(path)
    sha = hashlib.sha256()
    for key in sorted(k for k in tensors if not k.startswith("__flowdl__/")):
        sha.update(key.encode())  # model tensors are stored under their state-dict names
        sha.update(tensors[key].numpy().tobytes())
    return sha.hexdigest()[:12]
