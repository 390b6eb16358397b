"""The dynamic suite end to end at toy size, and its equality check."""

from __future__ import annotations

import pytest
import torch

from flowdl._bench.dynamic.models import DYNAMIC_MODELS
from flowdl._bench.dynamic.report import markdown
from flowdl._bench.dynamic.run import ARMS, DynamicConfig, build_arms, check_equal, run_dynamic
from flowdl._bench.pair import ParityError


@pytest.fixture(scope="module")
def result():  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    config = DynamicConfig(
        batch=24, dim=16, batches=2, warmup=0, rounds=1, backend="eager", clock="cpu"
    )
    return run_dynamic(config, "python -m flowdl bench --suite dynamic", echo=lambda _: None)


def test_every_model_runs_every_arm(result) -> None:  # type: ignore[no-untyped-def]
    assert [m.name for m in result.models] == list(DYNAMIC_MODELS)
    for m in result.models:
        assert set(m.times) == set(ARMS)
        assert all(len(t) == 1 and t[0] > 0 for t in m.times.values())
        assert set(m.differences) == set(ARMS)
        assert max(m.differences.values()) <= 1e-4


def test_report_has_a_row_per_model_in_both_tables(result) -> None:  # type: ignore[no-untyped-def]
    text = markdown(result)
    for m in result.models:
        assert text.count(f"| {m.name} |") == 2
    assert "--suite dynamic" in text
    assert "CPU time of the process" in text


def test_a_changed_weight_is_caught() -> None:
    torch.manual_seed(2)
    spec = DYNAMIC_MODELS["moe_top2"](12, 16)
    x = spec.make_batch(torch.device("cpu"))
    models, params = build_arms(spec, backend="eager")
    with torch.no_grad():
        params["flowdl"]["out.bias"].add_(0.1)
    with pytest.raises(ParityError, match="flowdl arm's output differs"):
        check_equal("moe_top2", models, params, x, spec.loss_fn)
