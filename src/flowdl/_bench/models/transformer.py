"""transformer: token embedding, learned positions, four post-LN encoder layers, vocab head."""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

import flowdl as fl
from flowdl._bench.pair import Batch, ModelPair, scaled
from flowdl._bench.protocol import Protocol

LAYERS, HEADS = 4, 8


class EncoderLayer(nn.Module):
    """Post-LN: ``x = LN(x + attn(x)); x = LN(x + Lin(GELU(Lin(x))))``; no dropout, no mask."""

    def __init__(self, dim: int, ff: int, need_weights: bool) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, HEADS, batch_first=True)
        self.norm1 = nn.LayerNorm(dim)
        self.ff1 = nn.Linear(dim, ff)
        self.act = nn.GELU()
        self.ff2 = nn.Linear(ff, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.need_weights = need_weights

    def forward(self, x: Tensor) -> Tensor:
        x = self.norm1(x + self.attn(x, x, x, need_weights=self.need_weights)[0])
        out: Tensor = self.norm2(x + self.ff2(self.act(self.ff1(x))))
        return out


class Transformer(nn.Module):
    """Embedding + learned positions, `EncoderLayer` × 4, Lin(dim, vocab)."""

    def __init__(self, vocab: int, seq: int, dim: int, ff: int, need_weights: bool) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.randn(1, seq, dim))
        self.layers = nn.ModuleList(EncoderLayer(dim, ff, need_weights) for _ in range(LAYERS))
        self.head = nn.Linear(dim, vocab)

    def forward(self, tokens: Tensor) -> Tensor:
        x = self.embed(tokens) + self.pos
        for layer in self.layers:
            x = layer(x)
        logits: Tensor = self.head(x)
        return logits


class SelfAttention(nn.Module):
    """``attention(x, x, x)[0]``: multi-head self-attention as a one-input node."""

    def __init__(self, attention: nn.MultiheadAttention, need_weights: bool) -> None:
        super().__init__()
        self.attention = attention
        self.need_weights = need_weights

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.attention(x, x, x, need_weights=self.need_weights)[0]
        return out


class AddPositions(nn.Module):
    """``x + positions``, with learned positions."""

    def __init__(self, positions: nn.Parameter) -> None:
        super().__init__()
        self.positions = positions

    def forward(self, x: Tensor) -> Tensor:
        return x + self.positions


def token_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Cross-entropy over ``[batch · seq, vocab]``."""
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def transformer(scale: float, protocol: Protocol) -> ModelPair:
    """floDl's transformer: batch 32 of 128 tokens, vocab 8192, width 512, 8 heads, FF 2048.

    Example:
        >>> from flowdl._bench.protocol import FLODL
        >>> transformer(0.05, FLODL).sizes
        {'batch': 2, 'seq': 8, 'vocab': 410, 'dim': 24, 'ff': 102}
    """
    batch, seq = scaled(32, scale), scaled(128, scale, minimum=8)
    vocab, dim, ff = scaled(8192, scale), scaled(512, scale, HEADS, HEADS), scaled(2048, scale)
    model = Transformer(vocab, seq, dim, ff, protocol.need_weights)
    twin = copy.deepcopy(model)
    flow = fl.Flow(twin.embed).through(AddPositions(twin.pos))
    for layer in twin.layers:
        assert isinstance(layer, EncoderLayer)
        flow = (
            flow.also(SelfAttention(layer.attn, protocol.need_weights))
            .through(layer.norm1)
            .also(fl.Flow(layer.ff1).through(layer.act).through(layer.ff2))
            .through(layer.norm2)
        )

    def make_batch(device: torch.device) -> Batch:
        return (
            torch.randint(0, vocab, (batch, seq), device=device),
            torch.randint(0, vocab, (batch, seq), device=device),
        )

    return ModelPair(
        "transformer",
        model,
        twin,
        flow.through(twin.head).build(),
        make_batch,
        token_cross_entropy,
        {"batch": batch, "seq": seq, "vocab": vocab, "dim": dim, "ff": ff},
        lr=1e-4,
        formulation="per layer `.also(attention).through(norm).also(ffn).through(norm)`, "
        "the feed-forward block a nested graph",
    )
