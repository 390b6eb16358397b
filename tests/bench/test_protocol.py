"""The step protocols: Adam's implementation, the two ways to sum the loss, interleaving."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from flowdl._bench.protocol import FLODL, PROTOCOLS, TUNED, Arm, adam_kind, interleave, make_adam


def test_the_two_protocols() -> None:
    assert set(PROTOCOLS) == {"flodl", "tuned"}
    assert (FLODL.fused_adam, FLODL.need_weights, FLODL.sync_every_step) == (False, True, True)
    assert (TUNED.fused_adam, TUNED.need_weights, TUNED.sync_every_step) == (True, False, False)


def test_adam_settings() -> None:
    plain = make_adam(nn.Linear(3, 3).parameters(), 1e-4, FLODL)
    tuned = make_adam(nn.Linear(3, 3).parameters(), 1e-4, TUNED)
    for opt in (plain, tuned):
        group = opt.param_groups[0]
        assert (group["lr"], group["betas"], group["eps"], group["weight_decay"]) == (
            1e-4,
            (0.9, 0.999),
            1e-8,
            0,
        )
    assert adam_kind(plain) == "for-loop"  # PyTorch's default on the CPU
    assert adam_kind(tuned) == "fused"  # the CPU has a fused kernel since torch 2.4


def test_adam_falls_back_when_the_device_has_no_fused_kernel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = torch.optim.Adam

    def no_fused(params: object, lr: float, fused: bool | None = None) -> torch.optim.Adam:
        if fused:
            raise RuntimeError("`fused=True` requires all the params to be on a supported device")
        return real(params, lr=lr)

    monkeypatch.setattr(torch.optim, "Adam", no_fused)
    assert adam_kind(make_adam(nn.Linear(2, 2).parameters(), 1e-3, TUNED)) == "for-loop"


def test_both_ways_of_summing_the_loss_train_the_same() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.Linear(8, 2))
    twin = copy.deepcopy(model)
    batches = [(torch.randn(5, 4), torch.randn(5, 2)) for _ in range(3)]
    mse = nn.functional.mse_loss
    synced = Arm(model, torch.optim.Adam(model.parameters(), lr=1e-2), mse, FLODL)
    summed = Arm(twin, torch.optim.Adam(twin.parameters(), lr=1e-2), mse, TUNED)
    for _ in range(2):
        a, b = synced.epoch(batches), summed.epoch(batches)
        assert a == pytest.approx(b, rel=1e-6)
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(p, q)


def test_interleave_alternates_the_order_and_times_every_round() -> None:
    calls: list[str] = []
    times = interleave(
        {
            "a": lambda: calls.append("a"),
            "b": lambda: calls.append("b"),
            "c": lambda: calls.append("c"),
        },
        rounds=4,
        warmup=2,
        device=torch.device("cpu"),
    )
    assert "".join(calls) == "abc" * 2 + "abc" + "cba" + "abc" + "cba"
    assert {k: len(v) for k, v in times.items()} == {"a": 4, "b": 4, "c": 4}
    assert all(t >= 0 for v in times.values() for t in v)
