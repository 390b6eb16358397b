"""Every benchmark model: the graph and the hand-written module are the same model.

Same parameters (the graph's are exactly the twin's), same loss and same gradients
on the same batch, in float64 at a tiny scale; and at full scale, floDl's sizes.
"""

from __future__ import annotations

import pytest
import torch

from flowdl._bench.models import MODELS
from flowdl._bench.pair import ModelPair, ParityError
from flowdl._bench.protocol import FLODL, TUNED, Protocol

TINY = 0.02

FLODL_PARAMETERS = {  # floDl's models at full size (flodl.md §2.2, "Params (computed)")
    "mlp": 16_802_816,
    "convnet": 3_965_028,
    "gru_seq": 1_314_048,
    "transformer": 21_071_872,
    "lstm_seq": 3_809_536,
    "conv_autoenc": 5_515_395,
    "residual_tower": 14_718_976,
    "gated_routing": 2_638_856,
    "iterative_refine": 3_152_896,
    "feedback_fixed": 790_016,
}

CASES = [(name, FLODL) for name in MODELS] + [("transformer", TUNED)]


def _double(pair: ModelPair) -> tuple[torch.Tensor, torch.Tensor]:
    for module in (pair.torch_model, pair.twin, pair.graph):
        module.double()
    x, y = pair.make_batch(torch.device("cpu"))
    return (x.double() if x.is_floating_point() else x), (
        y.double() if y.is_floating_point() else y
    )


def test_floDl_order() -> None:
    assert list(MODELS) == list(FLODL_PARAMETERS)


@pytest.mark.parametrize(("name", "protocol"), CASES, ids=[f"{n}-{p.key}" for n, p in CASES])
def test_same_loss_and_gradients(name: str, protocol: Protocol) -> None:
    pair = MODELS[name](TINY, protocol)
    assert pair.name == name
    pairs = pair.parameter_pairs()
    assert len(pairs) == len(list(pair.graph.parameters())) > 0
    x, y = _double(pair)
    for _, ours, theirs in pairs:
        assert ours is not theirs
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    want = pair.loss_fn(pair.torch_model(x), y)
    got = pair.loss_fn(pair.graph(x), y)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    want.backward()
    got.backward()
    for pname, ours, theirs in pairs:
        assert ours.grad is not None, pname
        assert theirs.grad is not None, pname
        torch.testing.assert_close(theirs.grad, ours.grad, rtol=1e-9, atol=1e-12, msg=pname)


@pytest.mark.parametrize("name", list(MODELS))
def test_full_size_is_floDls(name: str) -> None:
    with torch.device("meta"):  # no memory, no initialisation
        pair = MODELS[name](1.0, FLODL)
    assert pair.parameter_count() == FLODL_PARAMETERS[name]
    assert sum(p.numel() for p in pair.graph.parameters()) == FLODL_PARAMETERS[name]


def test_the_runner_check_passes_and_catches_a_different_model() -> None:
    pair = MODELS["mlp"](TINY, FLODL)
    batch = pair.make_batch(torch.device("cpu"))
    assert pair.check_same_loss(batch) > 0
    with torch.no_grad():
        next(iter(pair.graph.parameters())).add_(1.0)
    with pytest.raises(ParityError, match="mlp: the flowdl graph computes loss"):
        pair.check_same_loss(batch)


def test_a_graph_with_weights_of_its_own_is_caught() -> None:
    pair = MODELS["residual_tower"](TINY, FLODL)
    pair.twin = MODELS["residual_tower"](TINY, FLODL).twin
    with pytest.raises(ParityError, match="not those of the hand-written model's copy"):
        pair.parameter_pairs()


def test_the_transformer_follows_the_protocol_on_attention_weights() -> None:
    for protocol in (FLODL, TUNED):
        pair = MODELS["transformer"](TINY, protocol)
        flags = {
            m.need_weights
            for m in [*pair.torch_model.modules(), *pair.graph.modules()]
            if hasattr(m, "need_weights")
        }
        assert flags == {protocol.need_weights}


def test_sizes_shrink_but_structure_stays() -> None:
    small = {name: build(0.25, FLODL).sizes for name, build in MODELS.items()}
    assert small["gru_seq"]["steps"] == 50
    assert small["iterative_refine"]["iterations"] == 8
    assert small["feedback_fixed"]["iterations"] == 10
    assert small["gated_routing"]["experts"] == 8
    assert small["mlp"] == {"batch": 64, "io": 256, "hidden": 512}
