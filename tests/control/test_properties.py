"""Property tests: random nestings of loops, gates, switches and maps equal an independent
interpreter that runs every sample alone, in outputs and in gradients; invalid nestings
raise `fl.BuildError` and nothing else.

Every construct here treats rows independently (the leaves are element-wise, routers
and halts look at one row), so the interpreter may run each sample on its own: that
is the meaning of per-sample routing and halting.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

import flowdl as fl
from tests.strategies import BATCH, DIM, add, contains_bad, realise, run_row, specs
from tests.support import assert_same_as_oracle


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(spec=specs, seed=st.integers(0, 2**16))
def test_random_nestings_equal_running_each_sample_alone(spec: Any, seed: int) -> None:
    torch.manual_seed(seed)
    node = realise(spec)
    event(f"root: {node[0]}")
    if contains_bad(node):
        event("invalid")
        try:
            add(fl.Flow(nn.Identity()), node).build()
        except fl.BuildError:
            return
        raise AssertionError(f"{spec} should not build")
    graph = add(fl.Flow(nn.Identity()), node).build()
    x = torch.randn(BATCH, DIM, dtype=torch.float64, requires_grad=True)

    def oracle(x: Tensor) -> Tensor:
        return torch.cat([run_row(node, x[i : i + 1]) for i in range(BATCH)])

    try:
        oracle(x)
    except RuntimeError:  # nested slices that do not divide the width: fails at run time
        event("fails at run time")
        with pytest.raises(fl.GraphError, match="not divisible"):
            graph(x)
        return
    params = list(graph.parameters())
    if not params:
        torch.testing.assert_close(graph(x), oracle(x), rtol=0, atol=1e-12)
        return
    assert_same_as_oracle(graph, oracle, x, params=params, none_is_zero=True)
