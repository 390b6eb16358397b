"""Per-sample halting decides per reference whether to cut its rows, from what it is.

Values computed from this call's stream are per-sample (cut to the active samples
as they halt); auxiliary graph inputs are shared (passed whole) unless declared
per-sample. A shared memory with exactly B rows is never sliced: the batch equals
each sample run alone.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import flowdl as fl


class Attend(nn.Module):
    """One step of attention over a memory: ``s + softmax(s M^T) M``."""

    def forward(self, s: Tensor, memory: Tensor) -> Tensor:
        return s + torch.softmax(s @ memory.t(), dim=-1) @ memory


def halt(s: Tensor) -> Tensor:
    return (s.norm(dim=-1) > 3.0).double()


def attention_loop() -> fl.Graph:
    return (
        fl.Flow(nn.Identity())
        .input("memory")
        .loop(Attend())
        .until(halt, max_iter=6)
        .using("memory")
        .tag("loop")
        .build()
    )


def test_a_shared_memory_with_exactly_b_rows_is_not_sliced() -> None:
    g = attention_loop()
    torch.manual_seed(0)
    x = torch.randn(3, 2, dtype=torch.float64) * torch.tensor([[0.1], [1.0], [2.5]]).double()
    memory = torch.randn(3, 2, dtype=torch.float64)  # B rows, by coincidence
    out = g(x, memory)
    counts = g.iterations("loop")
    assert counts is not None
    for i in range(3):
        alone = g(x[i : i + 1], memory)
        torch.testing.assert_close(out[i : i + 1], alone, rtol=0, atol=1e-12)
        alone_counts = g.iterations("loop")
        assert alone_counts is not None
        assert counts[i].item() == alone_counts[0].item()
    assert len(set(counts.tolist())) > 1  # the samples halted at different iterations


class Gated(nn.Module):
    """``s + g``: a per-sample offset computed from the stream."""

    def forward(self, s: Tensor, offset: Tensor) -> Tensor:
        return s + offset


def test_a_reference_computed_from_the_stream_is_cut_to_the_active_rows() -> None:
    g = (
        fl.Flow(nn.Identity())
        .through(lambda x: x * 0.5)
        .tag("offset")
        .through(lambda x: x * 0.0)
        .loop(Gated())
        .until(lambda s: (s[:, 0] > 1.0).double(), max_iter=8)
        .using("offset")
        .build()
    )
    x = torch.tensor([[4.0], [1.0], [0.25]], dtype=torch.float64)
    out = g(x)
    for i in range(3):
        torch.testing.assert_close(out[i : i + 1], g(x[i : i + 1]), rtol=0, atol=1e-12)


def test_a_stream_derived_reference_without_a_row_per_sample_is_refused() -> None:
    g = (
        fl.Flow(nn.Identity())
        .through(lambda x: x.mean(0))  # [2]: computed from the stream, not per sample
        .tag("summary")
        .through(lambda x: torch.zeros(3, 2, dtype=torch.float64))
        .loop(Gated())
        .until(lambda s: (s[:, 0] > 1.0).double(), max_iter=3)
        .using("summary")
        .build()
    )
    with pytest.raises(fl.GraphError, match=r"'summary'.*does not have one row per sample"):
        g(torch.ones(3, 2, dtype=torch.float64))


class MaskedStep(nn.Module):
    """``s + mask``: the mask's rows belong to the samples."""

    def forward(self, s: Tensor, mask: Tensor) -> Tensor:
        return s + mask


def test_an_input_declared_per_sample_is_cut_to_the_active_rows() -> None:
    g = (
        fl.Flow(nn.Identity())
        .input("mask", per_sample=True)
        .loop(MaskedStep())
        .until(lambda s: (s[:, 0] > 2.0).double(), max_iter=5)
        .using("mask")
        .build()
    )
    x = torch.tensor([[0.0], [2.5], [0.5]], dtype=torch.float64)
    mask = torch.tensor([[1.0], [1.0], [0.25]], dtype=torch.float64)
    out = g(x, mask=mask)
    for i in range(3):
        torch.testing.assert_close(
            out[i : i + 1], g(x[i : i + 1], mask[i : i + 1]), rtol=0, atol=1e-12
        )


def test_a_value_tagged_shared_is_passed_whole() -> None:
    memory = torch.randn(3, 2, dtype=torch.float64)
    g = (
        fl.Flow(nn.Identity())
        .through(lambda x: memory + 0 * x.sum())  # computed "from" the stream, yet shared
        .tag("memory", shared=True)
        .through(
            lambda m: torch.zeros(3, 2, dtype=torch.float64) + torch.arange(3.0).double()[:, None]
        )
        .loop(Attend())
        .until(halt, max_iter=6)
        .using("memory")
        .build()
    )
    x = torch.zeros(3, 2, dtype=torch.float64)
    out = g(x)
    state = torch.arange(3.0).double()[:, None] + torch.zeros(3, 2, dtype=torch.float64)
    for i in range(3):  # each sample alone, against the whole memory
        s = state[i : i + 1]
        for _ in range(6):
            s = Attend()(s, memory)
            if halt(s).item() > 0:
                break
        torch.testing.assert_close(out[i : i + 1], s, rtol=0, atol=1e-12)


def test_the_declarations_take_booleans_only() -> None:
    with pytest.raises(fl.BuildError, match="per_sample must be True or False"):
        fl.Flow(nn.Identity()).input("mask", per_sample="yes")  # type: ignore[arg-type]
    with pytest.raises(fl.BuildError, match="shared must be True or False"):
        fl.Flow(nn.Identity()).tag("m", shared=1)  # type: ignore[arg-type]
