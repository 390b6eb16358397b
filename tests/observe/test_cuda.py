"""On a GPU: collecting and recording never wait for the device; flush reads it once."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import flowdl as fl

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_collect_and_record_do_not_synchronise() -> None:
    g = fl.Flow(nn.Linear(4, 4)).tag("h").through(nn.ReLU()).tag("out").build().cuda()
    x = torch.randn(8, 4, device="cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            out = g(x)
            loss = out.pow(2).mean()
            g.collect("h", "out")
            g.collect("h", reduce="max")
            g.record("loss", loss)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    means = g.flush()
    assert set(means) == {"h", "out", "loss"}
    torch.testing.assert_close(means["loss"], loss.item(), rtol=1e-6, atol=0)
    torch.testing.assert_close(means["out"], out.mean().item(), rtol=1e-6, atol=0)


def test_values_on_the_cpu_and_the_gpu_flush_together() -> None:
    g = fl.Flow(nn.Identity()).build()
    g.record("x", torch.tensor(1.0, device="cuda"), 2.0, torch.tensor(3.0))
    assert g.flush() == {"x": 2.0}
