"""The runner: model names, one model timed end to end, a disagreement stops the run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from flowdl._bench import suite
from flowdl._bench.models import MODELS
from flowdl._bench.ops import measure_ops
from flowdl._bench.overhead import measure_overhead
from flowdl._bench.pair import ModelPair, ParityError
from flowdl._bench.protocol import FLODL, TUNED, Protocol
from flowdl._bench.suite import SuiteConfig, parse_models, run_suite


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Timing loops on a busy machine stall at every multi-threaded op's barrier: use one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def config(**changes: object) -> SuiteConfig:
    settings: dict[str, object] = {
        "models": ("mlp",),
        "protocols": (FLODL, TUNED),
        "scale": 0.02,
        "batches": 1,
        "warmup": 0,
        "rounds": 2,
        "device": torch.device("cpu"),
        "ops": False,
        "overhead": False,
    }
    settings.update(changes)
    return SuiteConfig(**settings)  # type: ignore[arg-type]


def test_parse_models() -> None:
    assert parse_models("all") == tuple(MODELS)
    assert parse_models("gru_seq,mlp") == ("gru_seq", "mlp")
    with pytest.raises(ValueError, match="unknown model 'mpl'; the models are: mlp, convnet"):
        parse_models("mpl")
    with pytest.raises(ValueError, match=r"unknown model \(none given\)"):
        parse_models(",")


def test_run_suite_times_every_model_under_every_protocol() -> None:
    lines: list[str] = []
    result = run_suite(config(models=("mlp", "lstm_seq")), "cmd", echo=lines.append)
    assert [(m.name, m.protocol) for m in result.models] == [
        ("mlp", "flodl"),
        ("mlp", "tuned"),
        ("lstm_seq", "flodl"),
        ("lstm_seq", "tuned"),
    ]
    for m in result.models:
        assert len(m.pytorch) == len(m.flowdl) == 2
        assert all(t > 0 for t in m.pytorch + m.flowdl)
        assert m.adam == ("fused" if m.protocol == "tuned" else "for-loop")
    assert lines[0].startswith("mlp               flodl  PyTorch")
    assert result.machine["torch"] == torch.__version__
    assert result.ops == []
    assert result.overhead == []


def test_a_disagreeing_pair_stops_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    build_mlp = MODELS["mlp"]

    def broken(scale: float, protocol: Protocol) -> ModelPair:
        pair = build_mlp(scale, protocol)
        with torch.no_grad():
            for p in pair.graph.parameters():
                p.mul_(2.0)
        return pair

    monkeypatch.setitem(suite.MODELS, "mlp", broken)
    with pytest.raises(ParityError, match="mlp: the flowdl graph computes loss"):
        run_suite(config(), "cmd", echo=lambda _: None)


def test_operations_agree_and_are_timed() -> None:
    results = measure_ops(torch.device("cpu"), rounds=2, seconds_per_block=1e-4, sizes=(8,))
    assert [r.name for r in results][:4] == ["matmul 8", "add 8", "mul 8", "relu 8"]
    assert all(r.direct.n == r.graph.n == r.ratio.n == 2 for r in results)
    assert all(r.direct.median > 0 and r.graph.median > 0 for r in results)


def test_overhead_cases() -> None:
    results = measure_overhead(width=4, batch=2, nodes=4, rounds=2, calls_per_round=2)
    assert [r.case for r in results] == ["train step", "forward (no_grad)", "Identity forward"]
    assert all(r.nodes == 4 and r.per_node.n == 2 for r in results)
