"""`MetricStore` and `select_series`: what the plots, exports and timing trends share."""

from __future__ import annotations

import pytest
import torch

from flowdl._observe.store import MetricStore, select_series


def test_add_flush_history_reset() -> None:
    store = MetricStore()
    for v in (2.0, 4.0, 6.0):
        store.add("a", v)
    for v in (10.0, 20.0, 30.0):
        store.add("b", torch.tensor(v))
    assert store.buffered_names() == ["a", "b"]
    assert store.means() == {"a": 4.0, "b": 20.0}
    assert store.buffered_names() == ["a", "b"]  # means() does not flush
    assert store.flush(["a", "missing"]) == {"a": 4.0}
    assert store.buffered("a") == []
    assert store.buffered("b") == [10.0, 20.0, 30.0]
    assert store.flush() == {"b": 20.0}
    assert store.histories() == {"a": [4.0], "b": [20.0]}
    store.append({"a": 1.0})
    assert store.history("a") == [4.0, 1.0]
    history = store.history("a")
    history.append(99.0)
    assert store.history("a") == [4.0, 1.0]  # a copy
    store.reset(["a"])
    assert store.history("a") == []
    assert store.knows("a")
    assert not store.knows("c")
    store.reset()
    assert store.histories() == {}
    assert store.known_names() == ["a", "b"]


def test_flush_of_nothing() -> None:
    store = MetricStore()
    assert store.flush() == {}
    assert store.histories() == {}


def test_discard_and_means_of_some_names() -> None:
    store = MetricStore()
    store.add("a", 1.0)
    store.add("b", 3.0)
    assert store.means(["b"]) == {"b": 3.0}
    store.discard(["a"])
    assert store.buffered_names() == ["b"]


def test_select_series_rules() -> None:
    histories = {"loss": [1.0, 0.5], "acc": [0.1], "head_0": [2.0], "head_1": [3.0], "empty": []}
    groups = {"head": ["head_0", "head_1"]}
    assert [n for n, _ in select_series(histories, groups)] == ["acc", "head_0", "head_1", "loss"]
    chosen = select_series(histories, groups, ["loss", "head", "empty", "nope", "head_0"])
    assert chosen == [("loss", [1.0, 0.5]), ("head_0", [2.0]), ("head_1", [3.0])]
    with pytest.raises(ValueError, match=r"^no epoch data to plot \(call flush\(\) first\)$"):
        select_series({}, {}, what="plot")
    with pytest.raises(
        ValueError, match=r"^no timing data to plot for 'x' \(call flush_timings\(\) first\)$"
    ):
        select_series(
            {"y": [1.0]},
            {},
            ["x"],
            what="plot",
            data="timing data",
            hint="call flush_timings() first",
        )
