"""floDl's ten benchmark models, in floDl's order, each a `ModelPair` builder.

Every builder takes ``(scale, protocol)``: `scale` shrinks batch, widths and data
sizes (1.0 is floDl's full size); the structure — depth, sequence steps, loop
iterations, experts — stays. The protocol matters only where the model's code does
(the transformer's ``need_weights``).
"""

from __future__ import annotations

from collections.abc import Callable

from flowdl._bench.models.conv import conv_autoenc, convnet
from flowdl._bench.models.dense import mlp, residual_tower
from flowdl._bench.models.refine import feedback_fixed, iterative_refine
from flowdl._bench.models.routing import gated_routing
from flowdl._bench.models.sequence import gru_seq, lstm_seq
from flowdl._bench.models.transformer import transformer
from flowdl._bench.pair import ModelPair
from flowdl._bench.protocol import Protocol

Builder = Callable[[float, Protocol], ModelPair]

MODELS: dict[str, Builder] = {
    "mlp": mlp,
    "convnet": convnet,
    "gru_seq": gru_seq,
    "transformer": transformer,
    "lstm_seq": lstm_seq,
    "conv_autoenc": conv_autoenc,
    "residual_tower": residual_tower,
    "gated_routing": gated_routing,
    "iterative_refine": iterative_refine,
    "feedback_fixed": feedback_fixed,
}
"""Name -> builder, in the order floDl runs them."""
