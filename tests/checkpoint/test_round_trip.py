"""Save then load gives back the same model: graphs of every kind, buffers, ties, wrappers."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pytest
import safetensors.torch
import torch
from torch import nn

import flowdl as fl
from tests.checkpoint.helpers import (
    TiedLM,
    assert_same,
    encoder,
    reused_module_graph,
    rich_graph,
    snapshot,
)
from tests.ranks import single_process_group


def perturbed(model: nn.Module) -> nn.Module:
    """The model with every float tensor of its state shifted, so a load must change it."""
    with torch.no_grad():
        for value in model.state_dict().values():
            if value.is_floating_point():
                value.add_(torch.randn_like(value))
            else:
                value.add_(3)
    return model


def test_rich_graph_round_trip_restores_every_tensor_and_the_output(tmp_path: Path) -> None:
    source = rich_graph()
    x = torch.randn(6, 3)
    source.train()
    for _ in range(2):  # BatchNorm statistics and forward-reference state move
        source(x)
    source.eval()
    path = tmp_path / "rich.safetensors"
    fl.save_checkpoint(path, source)

    target = perturbed(rich_graph())
    report = fl.load_checkpoint(path, target)

    assert report.loaded == tuple(source.state_dict())
    assert report.complete
    assert report.hash_matched
    assert_same(snapshot(target), snapshot(source))
    assert int(target.BatchNorm1d_0.num_batches_tracked) == 2
    target.eval()
    source.reset_state()
    target.reset_state()
    torch.testing.assert_close(target(x), source(x), rtol=0, atol=0)


def test_forward_reference_state_is_not_saved(tmp_path: Path) -> None:
    # State is per-call activation, not a weight; the checkpoint holds the state dict only.
    g = encoder()
    g(torch.randn(2, 4))
    fl.save_checkpoint(tmp_path / "e.safetensors", g)
    info = fl.checkpoint_info(tmp_path / "e.safetensors")
    assert list(info.tensors) == list(g.state_dict())


def test_tied_weights_are_stored_once_and_load_back_tied(tmp_path: Path) -> None:
    source = TiedLM()
    path = tmp_path / "tied.safetensors"
    fl.save_checkpoint(path, source)

    stored = safetensors.torch.load_file(path)
    assert "embed.weight" in stored
    assert "out.weight" not in stored  # one copy on disk
    with safetensors.safe_open(str(path), "pt") as file:
        document = json.loads(file.metadata()["flowdl.checkpoint"])
    assert document["aliases"] == {"out.weight": "embed.weight"}
    plain = TiedLM()  # safetensors' own loader knows tied weights are stored once
    safetensors.torch.load_model(plain, path)
    assert torch.equal(plain.out.weight, source.embed.weight)

    target = perturbed(TiedLM())
    report = fl.load_checkpoint(path, target)
    assert report.loaded == ("embed.weight", "hidden.weight", "hidden.bias", "out.weight")
    assert target.out.weight is target.embed.weight  # still one tensor
    assert torch.equal(target.embed.weight, source.embed.weight)


def test_a_module_used_twice_in_a_graph_round_trips(tmp_path: Path) -> None:
    source = reused_module_graph()
    assert list(source.state_dict()) == [
        "Linear_0.weight", "Linear_0.bias", "Linear_2.weight", "Linear_2.bias"
    ]  # fmt: skip
    fl.save_checkpoint(tmp_path / "r.safetensors", source)
    target = perturbed(reused_module_graph())
    fl.load_checkpoint(tmp_path / "r.safetensors", target)
    x = torch.randn(4, 3)
    assert torch.equal(target(x), source(x))


def test_views_of_one_storage_are_saved_as_copies_and_restored(tmp_path: Path) -> None:
    class Views(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("whole", torch.arange(12.0))
            self.register_buffer("upper", self.whole[6:])  # a view of the other buffer

    path = tmp_path / "views.safetensors"
    fl.save_checkpoint(path, Views())
    target = Views()
    with torch.no_grad():
        target.whole.zero_()
    fl.load_checkpoint(path, target)
    assert torch.equal(target.whole, torch.arange(12.0))
    assert target.upper.data_ptr() == target.whole[6:].data_ptr()  # still a view


def test_a_plain_module_round_trips(tmp_path: Path) -> None:
    source = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.LazyLinear(3))
    source(torch.randn(2, 1, 5, 5))  # materialise the lazy layer
    fl.save_checkpoint(tmp_path / "seq.safetensors", source)
    target = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(18, 3))
    perturbed(target)
    # LazyLinear became Linear: same class after materialisation, same hash
    report = fl.load_checkpoint(tmp_path / "seq.safetensors", target)
    assert report.complete
    assert_same(snapshot(target), snapshot(source))


def test_every_dtype_safetensors_knows_round_trips(tmp_path: Path) -> None:
    class Typed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            for dtype in (torch.float16, torch.bfloat16, torch.float64, torch.int8,
                          torch.int32, torch.int64, torch.uint8, torch.bool):  # fmt: skip
                name = "as_" + str(dtype).removeprefix("torch.")
                self.register_buffer(name, (torch.arange(6) % 2).to(dtype).reshape(2, 3))
            self.register_buffer("empty", torch.zeros(0, 4))
            self.register_buffer("scalar", torch.tensor(2.5))

    source = Typed()
    with torch.no_grad():
        for value in source.state_dict().values():
            if value.numel():
                value.copy_(torch.randint(0, 2, value.shape).to(value.dtype))
    fl.save_checkpoint(tmp_path / "t.safetensors", source)
    target = Typed()
    fl.load_checkpoint(tmp_path / "t.safetensors", target)
    assert_same(snapshot(target), snapshot(source))


def test_non_contiguous_parameters_round_trip(tmp_path: Path) -> None:
    source = nn.Linear(3, 4)
    source.weight = nn.Parameter(torch.randn(3, 4).t())  # a transposed, non-contiguous weight
    assert not source.weight.is_contiguous()
    fl.save_checkpoint(tmp_path / "nc.safetensors", source)
    target = nn.Linear(3, 4)
    fl.load_checkpoint(tmp_path / "nc.safetensors", target)
    assert torch.equal(target.weight, source.weight)


def test_extra_state_of_a_module_round_trips(tmp_path: Path) -> None:
    class Counter(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.count = 0
            self.table = torch.zeros(2)

        def get_extra_state(self) -> dict[str, object]:
            return {"count": self.count, "table": self.table}

        def set_extra_state(self, state: dict[str, object]) -> None:
            self.count = state["count"]  # type: ignore[assignment]
            self.table = state["table"]  # type: ignore[assignment]

    source = Counter()
    source.count, source.table = 5, torch.tensor([1.5, -2.0])
    fl.save_checkpoint(tmp_path / "x.safetensors", source)
    target = Counter()
    report = fl.load_checkpoint(tmp_path / "x.safetensors", target)
    assert report.loaded == ("_extra_state",)
    assert target.count == 5
    assert torch.equal(target.table, source.table)


def test_extras_and_epoch_come_back_with_their_types(tmp_path: Path) -> None:
    extras = {
        "epoch": 12,
        "history": [0.5, 0.25, float("inf"), float("-inf")],
        "pair": (1, "two"),
        "by_step": {1: 0.1, 2: 0.2},
        "nested": {"__looks_like_a_marker": [None, True, False]},
        "text": "héllo",
        "big": 2**80,
    }
    path = tmp_path / "e.safetensors"
    fl.save_checkpoint(path, nn.Linear(1, 1), **extras)
    report = fl.load_checkpoint(path, nn.Linear(1, 1))
    assert report.epoch == 12
    assert report.extra == extras
    assert isinstance(report.extra["pair"], tuple)
    nan = fl.load_checkpoint(_saved(tmp_path, loss=float("nan")), nn.Linear(1, 1)).extra["loss"]
    assert nan != nan


def _saved(tmp_path: Path, **extra: object) -> Path:
    path = tmp_path / "extra.safetensors"
    fl.save_checkpoint(path, nn.Linear(1, 1), **extra)
    return path


def test_checkpoint_info_reads_the_metadata_and_the_keys(tmp_path: Path) -> None:
    model = TiedLM()
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 3)
    path = tmp_path / "i.safetensors"
    fl.save_checkpoint(path, model, optimizer, scheduler, epoch=4, note="x")
    for verify in (True, False):
        info = fl.checkpoint_info(path, verify=verify)
        assert info.format_version == 2
        assert info.flowdl_version == fl.__version__
        assert info.torch_version == torch.__version__
        assert info.structural_hash == fl.structural_hash(model)
        assert info.model_type == "TiedLM"
        assert (info.epoch, info.extra) == (4, {"epoch": 4, "note": "x"})
        assert info.tensors == {
            "embed.weight": ((7, 5), "F32"),
            "hidden.weight": ((5, 5), "F32"),
            "hidden.bias": ((5,), "F32"),
            "out.weight": ((7, 5), "F32"),
        }
        assert (info.optimizer, info.scheduler) == ("AdamW", "StepLR")


def test_a_checkpoint_is_a_readable_safetensors_file(tmp_path: Path) -> None:
    model = nn.Linear(2, 2)
    fl.save_checkpoint(tmp_path / "l.safetensors", model)
    tensors = safetensors.torch.load_file(tmp_path / "l.safetensors")
    assert torch.equal(tensors["weight"], model.weight.detach())
    assert set(tensors) == {"weight", "bias"}  # the state_dict's own names


def test_saving_replaces_an_existing_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    first, second = nn.Linear(2, 2), nn.Linear(2, 2)
    fl.save_checkpoint(path, first)
    fl.save_checkpoint(path, second)
    assert os.listdir(tmp_path) == ["m.safetensors"]
    target = nn.Linear(2, 2)
    fl.load_checkpoint(path, target)
    assert torch.equal(target.weight, second.weight)


def test_the_new_file_gets_the_permissions_of_a_new_file(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        fl.save_checkpoint(tmp_path / "p.safetensors", nn.Linear(1, 1))
    finally:
        os.umask(old)
    assert (tmp_path / "p.safetensors").stat().st_mode & 0o777 == 0o644


def test_str_path_and_pathlike_both_work(tmp_path: Path) -> None:
    fl.save_checkpoint(str(tmp_path / "s.safetensors"), nn.Linear(1, 1))
    assert fl.load_checkpoint(tmp_path / "s.safetensors", nn.Linear(1, 1)).complete


def test_wrapped_models_save_and_load_without_the_module_prefix(tmp_path: Path) -> None:
    with single_process_group(tmp_path):
        graph = rich_graph()
        ddp = nn.parallel.DistributedDataParallel(graph)
        assert next(iter(ddp.state_dict())).startswith("module.")
        fl.save_checkpoint(tmp_path / "ddp.safetensors", ddp)
        info = fl.checkpoint_info(tmp_path / "ddp.safetensors")
        assert list(info.tensors) == list(graph.state_dict())  # no "module." prefix
        assert info.structural_hash == fl.structural_hash(graph) == fl.structural_hash(ddp)

        plain = perturbed(rich_graph())
        fl.load_checkpoint(tmp_path / "ddp.safetensors", plain)  # wrapped -> unwrapped
        assert_same(snapshot(plain), snapshot(graph))

        fl.save_checkpoint(tmp_path / "plain.safetensors", plain)
        other = rich_graph()
        wrapped = nn.parallel.DistributedDataParallel(perturbed(other))
        fl.load_checkpoint(tmp_path / "plain.safetensors", wrapped)  # unwrapped -> wrapped
        assert_same(snapshot(other), snapshot(graph))


def test_data_parallel_and_compiled_models_are_unwrapped(tmp_path: Path) -> None:
    model = nn.Linear(2, 3)
    with warnings.catch_warnings():  # importing torch._dynamo warns about torch.jit
        warnings.simplefilter("ignore", DeprecationWarning)
        compiled = torch.compile(model)
    for wrapped in (nn.DataParallel(model), compiled):
        path = tmp_path / "w.safetensors"
        fl.save_checkpoint(path, wrapped)  # type: ignore[arg-type]
        assert list(fl.checkpoint_info(path).tensors) == ["weight", "bias"]
        fresh = nn.Linear(2, 3)
        fl.load_checkpoint(path, nn.DataParallel(fresh))
        assert torch.equal(fresh.weight, model.weight)


def test_loading_into_a_sub_graph_checks_the_sub_graphs_own_hash(tmp_path: Path) -> None:
    # What g.load_subgraph_checkpoint builds on: a checkpoint of a nested graph
    # loads into that graph inside another model, and only into it.
    trained = encoder()
    fl.save_checkpoint(tmp_path / "enc.safetensors", trained)
    whole = rich_graph()
    before = snapshot(whole)
    report = fl.load_checkpoint(tmp_path / "enc.safetensors", whole.encoder)
    assert report.complete
    assert torch.equal(whole.encoder.Linear_0.weight, trained.Linear_0.weight)
    after = snapshot(whole)["model"]
    changed = {k for k in after if not torch.equal(after[k], before["model"][k])}
    assert changed == {f"encoder.{k}" for k in trained.state_dict()}
    with pytest.raises(fl.CheckpointError, match="structural hashes differ"):
        fl.load_checkpoint(tmp_path / "enc.safetensors", whole.loop_0.body)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_model_saves_and_loads_onto_its_own_device(tmp_path: Path) -> None:
    source = rich_graph().cuda()
    optimizer = torch.optim.Adam(source.parameters())
    source(torch.randn(4, 3, device="cuda")).sum().backward()
    optimizer.step()
    fl.save_checkpoint(tmp_path / "cuda.safetensors", source, optimizer)
    target = rich_graph()  # on the CPU: tensors go to the model's device
    fl.load_checkpoint(tmp_path / "cuda.safetensors", target)
    assert all(p.device.type == "cpu" for p in target.parameters())
    assert_same(snapshot(target), snapshot(source.cpu()))
    back = rich_graph().cuda()
    back_optimizer = torch.optim.Adam(back.parameters())
    fl.load_checkpoint(tmp_path / "cuda.safetensors", back, back_optimizer)
    assert all(p.is_cuda for p in back.parameters())
    state = back_optimizer.state_dict()["state"][0]
    assert state["exp_avg"].is_cuda
