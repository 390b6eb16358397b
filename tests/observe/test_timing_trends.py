"""Timing trends: node durations from profiles, one mean per epoch, across the graph tree."""

from __future__ import annotations

import copy
import math
import pickle
import re
from pathlib import Path

import pytest
import torch
from torch import nn

import flowdl as fl
from flowdl._profile.profile import Profile


def encoder() -> fl.Graph:
    return (
        fl.Flow(nn.Linear(4, 4))
        .tag("hidden")
        .through(nn.Tanh())
        .tag("_inner")
        .through(nn.Linear(4, 4))
        .tag("act")
        .label("encoder")
        .build()
    )


def model() -> fl.Graph:
    """A tagged input, a node with two tags, an untagged node, a group, a loop, a child."""
    return (
        fl.Flow(nn.Identity())
        .tag("start")
        .through(encoder())
        .tag("encoded")
        .tag("features")
        .through(nn.ReLU())
        .split(nn.Linear(4, 4), nn.Tanh())
        .tag_group("head")
        .merge(fl.Add())
        .loop(nn.Linear(4, 4))
        .for_(3)
        .tag("refine")
        .build()
    )


def seconds(profiles: list[Profile], tag: str) -> list[float]:
    """The duration of the node tagged `tag` in each profile (the reference)."""
    return [next(n.seconds for n in p.nodes if tag in n.tags) for p in profiles]


def mean(values: list[float]) -> float:
    return math.fsum(values) / len(values)


def test_durations_become_one_mean_per_epoch() -> None:
    g = model()
    profiles: list[Profile] = []
    g.on_profile(profiles.append)
    g.enable_profiling()
    flushed = []
    for epoch in range(3):
        start = len(profiles)
        for _ in range(epoch + 2):
            g(torch.randn(5, 4))
            g.collect_timings("refine", "head", "encoded", "features")
        flushed.append((g.flush_timings(), profiles[start:]))
    for means, epoch_profiles in flushed:
        assert set(means) == {"refine", "head_0", "head_1", "encoded", "features"}
        for tag in means:
            assert means[tag] == mean(seconds(epoch_profiles, tag))
            assert means[tag] > 0
    trend = g.timing_trend("refine")
    assert list(trend.values) == [means["refine"] for means, _ in flushed]
    group = g.timing_trends("head")
    assert group.names == ("head_0", "head_1")
    assert list(group["head_1"].values) == [means["head_1"] for means, _ in flushed]
    # a node with two tags is timed under both
    assert g.timing_trend("encoded").values == g.timing_trend("features").values


def test_without_tags_every_tagged_node_of_every_profile_in_the_tree() -> None:
    g = model()
    g.enable_profiling()
    g(torch.randn(2, 4))
    g.collect_timings()
    # untagged nodes have no name; the nested graph is not profiled, so its nodes
    # are not timed (it is one node of g: "encoded")
    names = ["encoded", "features", "head_0", "head_1", "refine", "start"]
    assert sorted(g.flush_timings()) == names
    inner = g.subgraph("encoder")
    inner.enable_profiling()
    profiles: list[Profile] = []
    inner.on_profile(profiles.append)
    g(torch.randn(2, 4))
    g.collect_timings()
    means = g.flush_timings()
    assert sorted(means) == [
        "encoded",
        "encoder.act",
        "encoder.hidden",
        "features",
        "head_0",
        "head_1",
        "refine",
        "start",
    ]
    assert means["encoder.hidden"] == seconds(profiles, "hidden")[0]
    # the child's internal tag was flushed too, and is seen from the child only
    assert len(inner.timing_trend("_inner")) == 1
    assert "encoder._inner" not in g.timing_trends().names
    assert inner.timing_trends().names == ("_inner", "act", "hidden")
    assert g.timing_trend("encoder.hidden").values == inner.timing_trend("hidden").values


def test_graph_inputs_take_no_time_and_are_not_collected() -> None:
    g = fl.Flow(nn.Linear(2, 2)).tag("hidden").input("extra").through(fl.Add()).using("extra")
    graph = g.build()
    graph.enable_profiling()
    graph(torch.randn(3, 2), torch.randn(3, 2))
    graph.collect_timings("extra")
    assert graph.flush_timings() == {}
    graph.collect_timings()
    assert list(graph.flush_timings()) == ["hidden"]
    assert len(graph.timing_trend("extra")) == 0


def test_a_profile_counts_once_per_tag() -> None:
    g = model()
    g.enable_profiling()
    profiles: list[Profile] = []
    g.on_profile(profiles.append)
    g(torch.randn(2, 4))
    g.collect_timings("refine")
    g.collect_timings("refine")  # the same profile again: nothing more
    g.collect_timings()  # the other tags of it: once each
    g(torch.randn(2, 4))
    g.collect_timings()
    means = g.flush_timings()
    assert means["refine"] == mean(seconds(profiles, "refine"))
    assert means["head_0"] == mean(seconds(profiles, "head_0"))


def test_a_nested_graph_that_did_not_run_is_not_counted_again() -> None:
    taken = fl.Flow(nn.Linear(4, 4)).tag("inside").label("taken").build()
    skipped = fl.Flow(nn.Linear(4, 4)).tag("inside").label("skipped").build()
    selector = fl.FixedSelector(0)
    g = fl.Flow(nn.Identity()).switch(selector, taken, skipped).build()
    for graph in (g, taken, skipped):
        graph.enable_profiling()
    selector.index = 1
    g(torch.randn(2, 4))  # runs "skipped" once
    g.collect_timings()
    selector.index = 0
    for _ in range(3):
        g(torch.randn(2, 4))
        g.collect_timings()
    g.flush_timings()
    assert len(skipped.timing_trend("inside")) == 1
    first = skipped.profile()
    assert first is not None
    assert skipped.timing_trend("inside").values == (first.timing("inside"),)
    assert len(taken.timing_trend("inside")) == 1


def test_collecting_without_a_profile_is_an_error_saying_where_to_enable_it() -> None:
    g = model()
    with pytest.raises(RuntimeError, match=r"no profile to collect timings from") as off:
        g.collect_timings()
    assert "profiling is off" in str(off.value)
    assert "g.enable_profiling()" in str(off.value)
    g.enable_profiling()
    with pytest.raises(RuntimeError, match="no forward has run since it was enabled"):
        g.collect_timings("refine")
    g(torch.randn(2, 4))
    with pytest.raises(RuntimeError, match=r"for 'encoder\.hidden'") as nested:
        g.collect_timings("refine", "encoder.hidden")
    assert "g.subgraph('encoder').enable_profiling()" in str(nested.value)
    assert g.flush_timings() == {}  # all or nothing: "refine" was not collected either
    g.disable_profiling()  # drops the profile
    with pytest.raises(RuntimeError, match="profiling is off"):
        g.collect_timings()


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("nope", "no 'nope' in Graph"),
        ("encoder.nope", "no 'nope' in Graph 'encoder'"),
        ("encoder", "'encoder' is a subgraph of Graph"),
        ("loss", "'loss' is a metric of Graph"),
        ("encoder._inner", "'_inner' is internal to Graph 'encoder'"),
    ],
)
def test_names_that_are_not_tags_get_the_trees_path_errors(name: str, words: str) -> None:
    g = model()
    g.record("loss", 1.0)
    g.enable_profiling()
    g.subgraph("encoder").enable_profiling()
    g(torch.randn(2, 4))
    calls = [
        lambda: g.collect_timings(name),
        lambda: g.flush_timings(name),
        lambda: g.timing_trend(name),
        lambda: g.timing_trends(name),
        lambda: g.reset_timing_trend(name),
    ]
    for call in calls:
        with pytest.raises(KeyError, match=re.escape(words)) as error:
            call()
        assert "exists:" in str(error.value)


def test_a_tag_group_has_several_trends() -> None:
    g = model()
    with pytest.raises(ValueError, match=r"use g\.timing_trends\('head'\)"):
        g.timing_trend("head")


def test_values_and_timings_are_separate_pipelines() -> None:
    g = model()
    g.enable_profiling()
    flushes: list[dict[str, float]] = []
    g.on_flush(flushes.append)
    g(torch.randn(2, 4))
    g.collect("refine")
    g.collect_timings("refine")
    assert g.flush_timings() != {}
    assert flushes == []
    assert g.flush_count == 0
    assert g.collected("refine") != []  # and leaves the value buffer
    assert len(g.trend("refine")) == 0
    values = g.flush()
    assert list(values) == ["refine"]
    assert g.flush_count == 1
    assert len(g.timing_trend("refine")) == 1
    assert len(g.trend("refine")) == 1
    assert g.timing_trend("refine").values != g.trend("refine").values


def test_flushing_some_tags_keeps_the_others_buffered() -> None:
    g = model()
    g.enable_profiling()
    g(torch.randn(2, 4))
    g.collect_timings("refine", "head")
    assert list(g.flush_timings("refine")) == ["refine"]
    assert sorted(g.flush_timings()) == ["head_0", "head_1"]
    assert g.flush_timings() == {}


def test_reset_forgets_histories_and_keeps_buffers() -> None:
    g = model()
    g.enable_profiling()
    g.subgraph("encoder").enable_profiling()
    for _ in range(2):
        g(torch.randn(2, 4))
        g.collect_timings()
        g.flush_timings()
    g(torch.randn(2, 4))
    g.collect_timings()  # buffered, not flushed
    g.reset_timing_trend("head", "encoder.hidden")
    assert len(g.timing_trend("head_0")) == 0
    assert len(g.timing_trend("encoder.hidden")) == 0
    assert len(g.timing_trend("refine")) == 2
    assert len(g.timing_trend("encoder.act")) == 2
    g.reset_timing_trend()
    assert all(len(t) == 0 for t in g.timing_trends("refine", "encoder.act"))
    assert g.timing_trends().names == ()
    assert set(g.flush_timings()) >= {"refine", "head_0", "encoder.hidden"}  # buffers kept
    assert len(g.timing_trend("refine")) == 1


def test_timing_trends_answer_like_value_trends() -> None:
    g = model()
    g.enable_profiling()
    assert len(g.timing_trend("refine")) == 0  # a tag never timed: an empty trend
    g(torch.randn(2, 4))
    g.collect_timings()
    g.flush_timings()
    trend = g.timing_trend("refine")
    # fewer than two points: no predicate holds (goDl would call it stalled)
    assert not trend.stalled(5, tol=1.0)
    assert not trend.improving(5)
    assert not trend.converged(5, tol=1.0)
    assert trend.latest == trend.values[0] > 0
    # a snapshot, not a view of the history
    g(torch.randn(2, 4))
    g.collect_timings()
    g.flush_timings()
    assert len(trend) == 1
    assert len(g.timing_trend("refine")) == 2


def test_the_timings_csv(tmp_path: Path) -> None:
    g = model()
    g.enable_profiling()
    for _ in range(3):
        g(torch.randn(2, 4))
        g.collect_timings("refine", "head")
        g.flush_timings()
    out = g.export_timing_trends(tmp_path / "timings.csv", "refine", "head")
    lines = out.read_text().splitlines()
    assert len(lines) == 4
    assert lines[0] == "epoch,refine,head_0,head_1"
    for epoch, line in enumerate(lines[1:]):
        cells = line.split(",")
        assert cells[0] == str(epoch + 1)
        for name, cell in zip(("refine", "head_0", "head_1"), cells[1:], strict=True):
            assert cell == f"{g.timing_trend(name).values[epoch]:.8g}"
    everything = g.export_timing_trends(tmp_path / "all.csv").read_text()
    assert everything.splitlines()[0] == "epoch,head_0,head_1,refine"
    with pytest.raises(ValueError, match=r"no timing data to export .*flush_timings\(\) first"):
        model().export_timing_trends(tmp_path / "none.csv")
    assert not (tmp_path / "none.csv").exists()


def test_copies_start_without_timings_and_the_state_dict_holds_none() -> None:
    g = model()
    g.enable_profiling()
    g(torch.randn(2, 4))
    g.collect_timings()
    g.flush_timings()
    keys = list(g.state_dict())
    assert not any("timing" in key for key in keys)
    for copied in (copy.deepcopy(g), pickle.loads(pickle.dumps(g))):
        assert copied.timing_trends().names == ()
        assert list(copied.state_dict()) == keys
    assert len(g.timing_trend("refine")) == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_profiles_give_their_event_times_in_seconds() -> None:
    g = model().cuda()
    profiles: list[Profile] = []
    g.on_profile(profiles.append)
    g.enable_profiling()
    for _ in range(2):
        g(torch.randn(4, 4, device="cuda"))
        g.collect_timings("refine")
    means = g.flush_timings()
    assert profiles[0].device.startswith("cuda")
    assert means["refine"] == mean(seconds(profiles, "refine"))
    assert means["refine"] > 0
