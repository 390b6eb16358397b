"""collect, record, flush, log, reset_trend on one graph: goDl's observe tests (§8.2) and more."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn

import flowdl as fl
from flowdl._observe.state import values_of


def identity_sum() -> fl.Graph:
    """goDl's observe graph: identity tagged "hidden", then a sum tagged "output"."""
    return fl.Flow(nn.Identity()).tag("hidden").through(torch.sum).tag("output").build()


def test_tagged_values_of_the_last_forward() -> None:
    g = identity_sum()
    g(torch.tensor([3.0, 5.0]))
    assert torch.equal(g.tagged("hidden"), torch.tensor([3.0, 5.0]))
    assert g.tagged("output").item() == 8.0
    with pytest.raises(KeyError):
        g.tagged("unknown")
    g(torch.tensor([4.0, 6.0]))
    assert g.tagged("output").item() == 10.0


def test_log_hook_gets_the_tagged_values() -> None:
    g = identity_sum()
    seen: list[dict[str, Any]] = []
    g.on_log(seen.append)
    g(torch.tensor([3.0, 4.0]))
    g.log("output")
    assert list(seen[0]) == ["output"]
    assert seen[0]["output"].item() == 7.0
    g.log()
    assert sorted(seen[1]) == ["hidden", "output"]


def test_log_prints_to_stderr_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    g = identity_sum()
    g.log()  # nothing computed yet: nothing printed
    assert capsys.readouterr().err == ""
    g(torch.tensor([3.0, 4.0]))
    g.log()
    assert capsys.readouterr().err == "hidden: 3.5000 (mean of [2]) | output: 7.0000\n"
    g.on_log(lambda values: None)
    g.on_log(None)
    g.log("output")
    assert capsys.readouterr().err == "output: 7.0000\n"


def test_collect_and_collected() -> None:
    g = identity_sum()
    for x in ([1.0, 2.0], [3.0, 4.0], [5.0, 6.0]):
        g(torch.tensor(x))
        g.collect("output")
    assert g.collected("output") == [3.0, 7.0, 11.0]
    assert g.collected("hidden") == []


def test_flush_appends_the_means_and_empties_the_buffers() -> None:
    g = fl.Flow(nn.Identity()).tag("a").through(lambda x: 10 * x).tag("b").build()
    for x in (2.0, 4.0, 6.0):
        g(torch.tensor(x))
        g.collect("a", "b")
    assert g.flush() == {"a": 4.0, "b": 40.0}
    assert g.collected("a") == []
    assert g.trend("a").values == (4.0,)
    assert g.trend("b").values == (40.0,)


def test_flush_of_some_tags_keeps_the_other_buffers() -> None:
    g = fl.Flow(nn.Identity()).tag("a").through(lambda x: 10 * x).tag("b").build()
    g(torch.tensor(1.0))
    g.collect("a", "b")
    assert g.flush("a") == {"a": 1.0}
    assert g.collected("b") == [10.0]
    assert g.flush() == {"b": 10.0}


def test_flush_hook_and_an_empty_flush() -> None:
    g = identity_sum()
    calls: list[dict[str, float]] = []
    g.on_flush(calls.append)
    assert g.flush() == {}  # nothing collected: no history, no hook, no epoch
    assert calls == []
    assert g.flush_count == 0
    assert g.trend("output").values == ()
    for x in (2.0, 4.0, 6.0):
        g(torch.tensor([x]))
        g.collect("output")
    g.flush()
    assert calls == [{"output": 4.0}]
    assert g.flush_count == 1
    g.on_flush(None)
    g.record("output", 1.0)
    g.flush()
    assert len(calls) == 1


def test_trend_from_flushes() -> None:
    g = identity_sum()
    for v in (1.0, 0.8, 0.6, 0.4, 0.2):
        g(torch.tensor([v]))
        g.collect("output")
        g.flush()
    t = g.trend("output")
    assert t.improving(5)
    assert abs(t.slope(5) - (-0.2)) < 1e-7  # float32 values
    assert not t.stalled(5, 0.01)


def test_flat_trend_from_the_graph_is_stalled_and_converged() -> None:
    g = identity_sum()
    for _ in range(5):
        g(torch.tensor([0.5]))
        g.collect("output")
        g.flush()
    assert g.trend("output").stalled(5, 0.01)
    assert g.trend("output").converged(5, 1e-4)


def test_reset_trend_of_some_tags_and_of_all() -> None:
    g = fl.Flow(nn.Identity()).tag("a").tag("b").build()
    for _ in range(2):
        g(torch.tensor(1.0))
        g.collect("a", "b")
        g.flush()
    g.reset_trend("a")
    assert g.trend("a").values == ()
    assert len(g.trend("b")) == 2
    g.reset_trend()
    assert g.trend("b").values == ()
    assert g.flush_count == 2  # the clock is kept


def test_end_to_end_training_pattern() -> None:
    torch.manual_seed(0)
    g = fl.Flow(nn.Linear(2, 1)).tag("prediction").build()
    opt = torch.optim.SGD(g.parameters(), lr=0.1)
    x = torch.randn(32, 2)
    y = x @ torch.tensor([[2.0], [-1.0]])
    for _ in range(3):
        for batch in range(4):
            xb, yb = x[batch * 8 : (batch + 1) * 8], y[batch * 8 : (batch + 1) * 8]
            loss = (g(xb) - yb).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            g.record("loss", loss)
            g.collect("prediction")
        g.flush()
    t = g.trend("loss")
    assert len(t) == 3
    assert t.improving(3)
    assert not t.stalled(3, 1e-4)


def test_record_takes_floats_ints_and_one_element_tensors() -> None:
    g = identity_sum()
    g.record(
        "loss", 1.0, 2, torch.tensor(3.0), torch.tensor([4.0]), torch.tensor(5, dtype=torch.int64)
    )
    assert g.collected("loss") == [1.0, 2.0, 3.0, 4.0, 5.0]
    loss = torch.tensor(2.0, requires_grad=True) * 3
    g.record("loss", loss)
    assert g.flush() == {"loss": 3.5}


def test_record_keeps_the_value_at_the_call_not_a_view_of_the_tensor() -> None:
    g = identity_sum()
    total = torch.zeros((), dtype=torch.float64)
    for step in (1.0, 2.0, 3.0):  # an accumulator recorded, then changed in place
        total += step
        g.record("running", total)
    aux = torch.tensor([0.25])
    g.record_at("aux", aux)
    aux.mul_(100)
    assert g.collected("running") == [1.0, 3.0, 6.0]
    assert g.flush() == {"running": (1.0 + 3.0 + 6.0) / 3, "aux": 0.25}


def test_collect_keeps_what_a_reduction_returned_even_if_it_is_a_view() -> None:
    g = fl.Flow(nn.Identity()).tag("x").build()
    x = torch.tensor([2.0])
    out = g(x)
    g.collect("x", reduce=lambda t: t.reshape(()))  # a view of the tagged value
    out.add_(40.0)
    assert g.flush() == {"x": 2.0}


@pytest.mark.parametrize(
    ("values", "error", "match"),
    [
        ((), TypeError, "needs at least one value"),
        ((torch.ones(3),), ValueError, r"gave Tensor\[3\] float32; expected one value"),
        (("0.5",), TypeError, "expected a float or a one-element tensor"),
        ((True,), TypeError, "expected a float or a one-element tensor"),
        ((None,), TypeError, "expected a float or a one-element tensor"),
        ((torch.tensor(1j),), ValueError, "complex"),
    ],
)
def test_record_rejects_what_is_not_one_number(
    values: tuple[Any, ...], error: type[Exception], match: str
) -> None:
    g = identity_sum()
    with pytest.raises(error, match=match):
        g.record("loss", *values)
    assert g.collected("loss") == []  # nothing half-recorded


def test_record_names() -> None:
    g = fl.Flow(nn.Identity()).split(nn.ReLU(), nn.Tanh()).tag_group("head").merge(fl.Add())
    graph = g.build()
    graph.record("val/loss", 1.0)
    with pytest.raises(ValueError, match=r"use g.record_at\('encoder.loss'\)"):
        graph.record("encoder.loss", 1.0)
    with pytest.raises(ValueError, match="'head' is a tag group"):
        graph.record("head", 1.0)
    with pytest.raises(ValueError, match="not a valid name"):
        graph.record("has space", 1.0)
    with pytest.raises(ValueError, match="not a valid name"):
        graph.record("", 1.0)
    with pytest.raises(TypeError, match="takes names as strings"):
        graph.record(3, 1.0)  # type: ignore[arg-type]


def test_collect_rejects_bad_tags_and_no_tags() -> None:
    g = identity_sum()
    g(torch.tensor([1.0]))
    with pytest.raises(TypeError, match="needs at least one tag"):
        g.collect()
    with pytest.raises(KeyError, match="no tag 'hiden'") as info:
        g.collect("hiden")
    assert "tags: hidden, output" in str(info.value)
    with pytest.raises(ValueError, match=r"use g.collect_at\('a.b'\)"):
        g.collect("a.b")
    with pytest.raises(ValueError, match="unknown reduction 'median'"):
        g.collect("output", reduce="median")  # type: ignore[arg-type]


def test_collect_skips_tags_without_a_value() -> None:
    g = identity_sum()
    g.collect("output")  # before any forward
    assert g.collected("output") == []
    assert g.flush() == {}


def test_a_failed_forward_keeps_the_tags_it_reached() -> None:
    def fail(x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")

    g = fl.Flow(nn.Identity()).tag("before").through(fail).tag("after").build()
    with pytest.raises(fl.GraphError):
        g(torch.tensor([2.0]))
    g.collect("before", "after")
    assert g.flush() == {"before": 2.0}


# ---------------------------------------------------------------------------- reductions


@pytest.mark.parametrize(
    ("reduce", "expected"),
    [
        ("mean", lambda t: t.mean()),
        ("sum", lambda t: t.sum()),
        ("max", lambda t: t.max()),
        ("min", lambda t: t.min()),
        ("norm", lambda t: t.norm()),
        (lambda t: t.abs().max(), lambda t: t.abs().max()),
        (lambda t: float(t[0, 1]), lambda t: t[0, 1]),
    ],
)
def test_reductions_against_float64(reduce: Any, expected: Any) -> None:
    torch.manual_seed(3)
    x = torch.randn(4, 5, dtype=torch.float64)
    g = fl.Flow(nn.Identity()).tag("h").build()
    g(x)
    g.collect("h", reduce=reduce)
    assert g.collected("h") == [pytest.approx(float(expected(x)), rel=1e-15, abs=1e-15)]


def test_integer_and_boolean_tensors_are_reduced_in_float64() -> None:
    g = fl.Flow(nn.Identity()).tag("h").build()
    g(torch.tensor([1, 2, 4], dtype=torch.int64))
    g.collect("h")
    g(torch.tensor([True, False, False, False]))
    g.collect("h")
    assert g.collected("h") == [7 / 3, 0.25]


def test_collect_keeps_the_tensor_and_never_reads_it() -> None:
    # A meta tensor has no data: reading it would fail, so collect reads nothing.
    g = fl.Flow(nn.Identity()).tag("h").build()
    g(torch.ones(8, 4, device="meta"))
    for reduce in ("mean", "sum", "max", "min", "norm"):
        g.collect("h", reduce=reduce)  # type: ignore[arg-type]
    store = values_of(g)
    assert store is not None
    buffered = store._buffers["h"]
    assert len(buffered) == 5
    assert all(isinstance(v, torch.Tensor) and v.device.type == "meta" for v in buffered)
    assert not any(v.requires_grad for v in buffered)


def test_collect_detaches_from_autograd() -> None:
    layer = nn.Linear(3, 3)
    g = fl.Flow(layer).tag("h").build()
    g(torch.randn(2, 3))
    g.collect("h")
    store = values_of(g)
    assert store is not None
    assert store._buffers["h"][0].grad_fn is None


@pytest.mark.parametrize(
    ("value", "reduce", "error", "match"),
    [
        (torch.ones(0, 3), "mean", ValueError, r"empty tensor \(Tensor\[0, 3\] float32\)"),
        (torch.ones(2, dtype=torch.complex64), "mean", ValueError, "complex tensor"),
        ((torch.ones(2), torch.ones(2)), "mean", TypeError, r"cannot collect tuple"),
        (torch.ones(3), lambda t: t * 2, ValueError, "expected one value"),
        (torch.ones(3), lambda t: "big", TypeError, "expected a float or a one-element tensor"),
    ],
)
def test_collect_errors_name_the_tag(
    value: Any, reduce: Any, error: type[Exception], match: str
) -> None:
    g = fl.Flow(nn.Identity()).tag("h").build()
    g(value)
    with pytest.raises(error, match=match) as info:
        g.collect("h", reduce=reduce)
    assert "g.collect('h')" in str(info.value)


def test_collect_of_python_numbers() -> None:
    g = fl.Flow(nn.Identity()).tag("h").build()
    g(3)
    g.collect("h")
    assert g.collected("h") == [3.0]


def test_mixed_devices_and_dtypes_are_read_together() -> None:
    g = fl.Flow(nn.Identity()).build()
    g.record("x", torch.tensor(1.0, dtype=torch.float16), 2.0, torch.tensor(3, dtype=torch.int32))
    g.record("y", torch.tensor(0.125, dtype=torch.bfloat16))
    assert g.flush() == {"x": 2.0, "y": 0.125}


def test_flushed_means_are_exact_float64_means() -> None:
    g = fl.Flow(nn.Identity()).build()
    values = [0.1, 0.2, 0.3, 1e16, -1e16]
    g.record("x", *values)
    assert g.flush()["x"] == math.fsum(values) / 5


def test_trend_of_unknown_names_and_groups() -> None:
    g = fl.Flow(nn.Identity()).split(nn.ReLU(), nn.Tanh()).tag_group("head").merge(fl.Add())
    graph = g.build()
    assert graph.trend("head_0").values == ()  # a tag: empty until flushed
    with pytest.raises(KeyError, match="no tag or metric 'loss'") as info:
        graph.trend("loss")
    assert "tags: head_0, head_1" in str(info.value)
    graph.record("loss", 1.0)
    assert graph.trend("loss").values == ()  # known, not flushed yet
    with pytest.raises(ValueError, match=r"use g\.trends"):
        graph.trend("head")
    with pytest.raises(ValueError, match=r"use g.trend_at\('x.y'\)"):
        graph.trend("x.y")


def test_latest_metrics_of_one_graph() -> None:
    g = identity_sum()
    assert g.latest_metrics() == {}
    g(torch.tensor([1.0, 2.0]))
    g.collect("output")
    g.record("loss", 0.5)
    g.record("_internal", 1.0)
    g.flush()
    assert g.latest_metrics() == {"output": 3.0, "loss": 0.5, "_internal": 1.0}


def test_a_failing_collect_buffers_nothing() -> None:
    g = fl.Flow(nn.Identity()).tag("good").through(lambda x: (x, x)).tag("pair").build()
    g(torch.ones(2))
    with pytest.raises(TypeError, match="cannot collect tuple"):
        g.collect("good", "pair")
    assert g.collected("good") == []


def test_flush_of_diverged_values_is_not_an_error() -> None:
    g = fl.Flow(nn.Identity()).build()
    g.record("loss", 1.0, float("inf"))
    g.record("both", float("inf"), float("-inf"))
    g.record("nan", float("nan"), 1.0)
    means = g.flush()
    assert means["loss"] == math.inf
    assert math.isnan(means["both"])
    assert math.isnan(means["nan"])
    assert not g.trend("loss").stalled(0, 1.0)
