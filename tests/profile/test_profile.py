"""Profiling: off and free by default; per node, per level and total times when on."""

from __future__ import annotations

import copy
import pickle
import time
from collections.abc import Iterator

import pytest
import torch
from torch import nn

import flowdl as fl
from flowdl._profile.profile import LevelTiming, NodeTiming, Profile


def three_branches() -> fl.Graph:
    return (
        fl.Flow(nn.Linear(4, 4))
        .tag("encoder")
        .split(nn.Linear(4, 4), nn.Tanh(), nn.ReLU())
        .merge(fl.Add())
        .through(nn.Linear(4, 2))
        .tag("decoder")
        .build()
    )


CLOCKS = ("perf_counter", "perf_counter_ns", "monotonic", "monotonic_ns", "time", "time_ns")


@pytest.fixture
def clock_reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Counts every read of the `time` module's clocks."""
    reads: list[str] = []
    for name in CLOCKS:
        real = getattr(time, name)

        def counted(real=real, name=name):  # type: ignore[no-untyped-def]
            reads.append(name)
            return real()

        monkeypatch.setattr(time, name, counted)
    return reads


def test_disabled_by_default_and_free(clock_reads: list[str]) -> None:
    g = three_branches()
    assert g.profiling is False
    assert g.profile() is None
    assert g.timing("encoder") is None
    g(torch.randn(2, 4))
    # The first call of a graph reads the clock once: observation's wall clock starts
    # there (g.elapsed, g.eta). Later calls read none.
    assert clock_reads == ["monotonic"]
    clock_reads.clear()
    g(torch.randn(2, 4))
    assert clock_reads == []  # not one clock read per call, or per node
    assert g.profile() is None
    g.enable_profiling()
    g(torch.randn(2, 4))
    assert clock_reads
    assert set(clock_reads) == {"perf_counter"}


def test_the_plain_loop_is_used_when_off(monkeypatch: pytest.MonkeyPatch) -> None:
    g = three_branches()
    g.enable_profiling()
    g.disable_profiling()
    from flowdl._profile.runner import Profiler

    def fail(*args: object) -> None:
        raise AssertionError("the profiled loop ran")

    monkeypatch.setattr(Profiler, "run", fail)
    g(torch.randn(2, 4))


def test_basic_profile() -> None:
    g = three_branches()
    g.enable_profiling()
    x = torch.randn(2, 4)
    y = g(x)
    g.disable_profiling()
    torch.testing.assert_close(g(x), y)  # profiling does not change results
    g.enable_profiling()
    g(x)
    p = g.profile()
    assert isinstance(p, Profile)
    assert p.total_seconds > 0
    assert p.device == "cpu"
    ids = [n.id for n in p.nodes]
    assert ids == [node.id for node in g._plan.step_nodes]
    assert ids == [i for level in g.levels[1:] for i in level]
    for node in p.nodes:
        assert node.seconds > 0
        assert node.id in g.levels[node.level]
    assert [(lv.index, lv.n_nodes) for lv in p.levels] == [(1, 1), (2, 3), (3, 1), (4, 1)]
    for level in p.levels:
        assert level.wall_seconds > 0
        inside = [n.seconds for n in p.nodes if n.level == level.index]
        assert level.node_seconds == pytest.approx(sum(inside))
        assert level.node_seconds <= level.wall_seconds  # the nodes run inside the level
    assert sum(lv.wall_seconds for lv in p.levels) <= p.total_seconds
    assert p.node("Linear_0").tags == ("encoder",)
    assert g.timing("encoder") == p.node("Linear_0").seconds > 0
    assert g.timing("decoder") == p.node("Linear_2").seconds
    assert p.nodes[-1].output_shape == (2, 2)


def test_parallelism() -> None:
    g = three_branches()
    g.enable_profiling()
    g(torch.randn(2, 4))
    p = g.profile()
    assert p is not None
    multi = p.levels[1]
    assert multi.n_nodes == 3
    assert multi.parallelism == pytest.approx(multi.node_seconds / multi.wall_seconds)
    assert 0 < multi.parallelism <= 1.0  # flowdl runs a level's nodes one after another
    assert p.levels[0].parallelism == 1.0


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        (LevelTiming(0, 100.0, 100.0, 1), 1.0),  # goDl's test
        (LevelTiming(0, 100.0, 40.0, 1), 1.0),  # one node: always 1
        (LevelTiming(0, 2.0, 3.0, 3), 1.5),
        (LevelTiming(0, 4.0, 3.0, 3), 0.75),
        (LevelTiming(0, 0.0, 3.0, 3), 1.0),  # no wall time: 1
    ],
)
def test_parallelism_rule(level: LevelTiming, expected: float) -> None:
    assert level.parallelism == expected


def test_a_new_profile_per_forward() -> None:
    g = three_branches()
    g.enable_profiling()
    g(torch.randn(2, 4))
    first = g.profile()
    g(torch.randn(2, 4))
    second = g.profile()
    assert first is not None
    assert second is not None
    assert first is not second


def test_disable_clears() -> None:
    g = three_branches()
    g.enable_profiling()
    g(torch.randn(2, 4))
    g.disable_profiling()
    assert g.profiling is False
    assert g.profile() is None
    assert g.timing("encoder") is None
    g(torch.randn(2, 4))
    assert g.profile() is None


def test_timing_of_inputs_and_unknown_tags() -> None:
    g = fl.Flow(nn.Identity()).input("aux").through(fl.Add()).using("aux").tag("sum").build()
    g.enable_profiling()
    g(torch.ones(2), torch.ones(2))
    assert g.timing("aux") == 0.0  # an input takes no time
    assert g.timing("sum") > 0
    with pytest.raises(KeyError, match="its tags are: aux, sum"):
        g.timing("nope")
    p = g.profile()
    assert p is not None
    with pytest.raises(KeyError, match="the timed tags are: sum"):
        p.timing("aux")
    with pytest.raises(KeyError, match="its nodes are: Identity_0, Add_0"):
        p.node("input")


def test_hooks() -> None:
    g = three_branches()
    seen: list[tuple[Profile, object]] = []
    handle = g.on_profile(lambda p: seen.append((p, g.tagged("decoder"))))
    g(torch.randn(2, 4))
    assert seen == []  # not called while profiling is off
    g.enable_profiling()
    g(torch.randn(2, 4))
    ((profile, decoder),) = seen
    assert profile is g.profile()
    assert profile.total_seconds > 0
    assert decoder is g.tagged("decoder")  # the hook sees this call's tagged values
    handle.remove()
    g(torch.randn(2, 4))
    assert len(seen) == 1
    with pytest.raises(TypeError, match="on_profile\\(\\) takes a function"):
        g.on_profile("print")  # type: ignore[arg-type]


def test_a_failed_forward_keeps_the_previous_profile() -> None:
    calls = []
    g = fl.Flow(nn.Linear(2, 2)).tag("hidden").through(nn.Linear(3, 1)).build()
    g.on_profile(calls.append)
    g.enable_profiling()
    with pytest.raises(fl.GraphError) as profiled:
        g(torch.randn(1, 2))
    g.disable_profiling()
    with pytest.raises(fl.GraphError) as plain:
        g(torch.randn(1, 2))
    assert str(profiled.value) == str(plain.value)  # the same error as the plain loop's
    assert g.tagged("hidden") is not None  # tags computed before the failure are kept
    assert calls == []
    assert g.profile() is None


def test_cancellation_is_checked_between_nodes() -> None:
    ctx = fl.Context()
    g = fl.Flow(nn.Identity()).through(lambda x: (ctx.cancel(), x)[1]).through(nn.Tanh()).build()
    g.enable_profiling()
    with pytest.raises(fl.Cancelled):
        g(torch.ones(1), ctx=ctx)
    assert g.profile() is None


def test_the_report() -> None:
    p = Profile(
        total_seconds=0.00105,
        levels=(LevelTiming(1, 0.0002, 0.0002, 1), LevelTiming(2, 0.0008, 0.00072, 2)),
        nodes=(
            NodeTiming("Linear_0", ("encoder",), 0.0002, 1),
            NodeTiming("gate_0", (), 0.0006, 2),
            NodeTiming("Tanh_0", ("a", "b"), 0.00012, 2),
        ),
    )
    assert str(p) == "\n".join(
        [
            "Forward: 1.05ms (2 levels, 3 nodes) on cpu",
            "",
            "  Level 1  200µs",
            '    Linear_0 "encoder"                          200µs   19.0%',
            "",
            "  Level 2  800µs  2 nodes  ×0.90",
            "    gate_0                                      600µs   57.1%",
            '    Tanh_0 "a" "b"                              120µs   11.4%',
        ]
    )
    assert repr(p) == "<Profile 1.05ms: 2 levels, 3 nodes on cpu>"


def test_the_report_of_a_real_run() -> None:
    g = three_branches()
    g.enable_profiling()
    g(torch.randn(2, 4))
    text = str(g.profile())
    assert text.startswith("Forward: ")
    assert "(4 levels, 6 nodes) on cpu" in text.splitlines()[0]
    assert "  Level 1  " in text
    assert "  Level 2  " in text
    assert "3 nodes  ×" in text
    assert 'Linear_0 "encoder"' in text
    assert 'Linear_2 "decoder"' in text


def test_copies_start_unprofiled_and_nothing_goes_into_the_state_dict() -> None:
    g = three_branches()
    g.on_profile(lambda p: None)
    g.enable_profiling()
    g(torch.randn(2, 4))
    for twin in (copy.deepcopy(g), pickle.loads(pickle.dumps(g))):  # the lambda hook stays
        assert twin.profiling is False
        assert twin.profile() is None
        assert not twin._profile_hooks
        twin(torch.randn(2, 4))
        assert twin.profile() is None
    assert g.profiling
    assert g.profile() is not None
    assert list(g.state_dict()) == list(three_branches().state_dict())


def test_profiling_under_torch_compile_falls_back_to_the_plain_loop() -> None:
    g = three_branches()
    g.enable_profiling()
    compiled = torch.compile(g, backend="eager", fullgraph=True)
    x = torch.randn(2, 4)
    y = compiled(x)
    assert g.profile() is None  # clocks are eager-only: the compiled call is not timed
    torch.testing.assert_close(g(x), y)
    assert g.profile() is not None  # eager calls are
