"""Train a character-level GRU on tiny Shakespeare; report the validation loss and a sample.

    python examples/char_rnn.py --data ../shared/data/tinyshakespeare/input.txt

The model is a *step* graph: one call reads one character per sequence (ids ``[B]``)
and returns the logits of the next one (``[B, vocabulary]``). Its hidden state crosses
calls through a forward reference, a ``.using("h0")`` that comes before the
``.tag("h0")`` it reads::

    fl.Flow(nn.Embedding(vocabulary, 64))
      .through(nn.GRUCell(64, 256)).using("h0")  # "h0" is defined below: the previous call's
      .tag("h0", init=(256,))                     # this call's h; zeros [B, 256] on a first call
      .through(nn.Linear(256, vocabulary))

Why a step graph rather than ``.loop`` or ``.map``: ``.loop(body)`` feeds the body its
own output again, with no new input per iteration, and ``.map(body)`` applies the body
to rows independently; a recurrent network reads a *new* character at every step and
carries its state from one step to the next, which is exactly what a forward reference
does across calls. The same module then serves training (teacher forcing over chunks of
text), evaluation, and sampling (one character per call, the state simply continuing),
with no separate "generate" code path and no state passed around by hand.

Training is truncated backpropagation through time. Windows of ``--seq-len``
characters are drawn at random, ``--batch-size`` at a time; every window starts from
fresh state (``g.reset_state()``) and is cut into chunks of ``--bptt`` characters.
After each chunk: one Adam step (gradients clipped to norm ``--clip``) and
``g.detach_state()``, so the state flows on through the whole window while gradients
reach back at most one chunk. ``g.backprop_state = True`` (set by `build_model`) is
what lets gradients flow through the state across the calls of a chunk; without it
every call would be trained as if it had no past.

The budget is ``--steps`` optimizer steps (one per chunk), or ``--time-limit`` seconds
if that comes first (the defaults, 400 steps or 150 seconds, take two to three minutes
on two busy CPU cores; ``--time-limit 0`` trains for the steps however long they take,
which makes a run repeatable). `fl.Monitor` prints a line every ``--log-every`` steps
(the mean training loss of those steps, as the graph recorded and flushed it, their
time and the time left); ``--dashboard`` also serves the live dashboard, with the
model's drawing, on 127.0.0.1 while it trains. Then the validation loss (mean
cross-entropy in nats per character) is computed on ``--validation-windows`` windows
spread evenly over the last 10% of the text, each read from fresh state (so the first
characters of a window are predicted with little context), and a sample is generated
from ``--prompt``. Nothing is saved unless ``--checkpoint PATH`` is given (the model,
Adam's state, and as extras the vocabulary and the sizes needed to rebuild the model).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional
from torch.utils.data import DataLoader, Subset

import flowdl as fl
from flowdl._format import format_duration, format_metric
from flowdl.data import CharacterDataset

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "tinyshakespeare" / "input.txt"
VALIDATION_SHARE = 0.1


def build_model(
    vocab_size: int, *, embedding: int = 64, hidden: int = 256, layers: int = 1
) -> fl.Graph:
    """The step graph: embedding, `layers` GRU cells with state ``h0, h1, ...``, linear head.

    Each cell reads its own previous output through a forward reference (tag ``h<i>``,
    zeros ``[B, hidden]`` on a first call). ``backprop_state`` is on: the state keeps
    its autograd history until ``detach_state()``, for truncated backpropagation.
    """
    flow = fl.Flow(nn.Embedding(vocab_size, embedding))
    width = embedding
    for layer in range(layers):
        state = f"h{layer}"
        flow = flow.through(nn.GRUCell(width, hidden)).using(state).tag(state, init=(hidden,))
        width = hidden
    model = flow.through(nn.Linear(hidden, vocab_size)).label("char_rnn").build()
    model.backprop_state = True
    return model


def unroll(model: fl.Graph, inputs: Tensor) -> Tensor:
    """Run the step graph over the characters of `inputs` ``[B, T]``: logits ``[B, T, V]``.

    The state continues from the model's previous call (call ``reset_state()`` first
    for a fresh start).
    """
    return torch.stack([model(inputs[:, t]) for t in range(inputs.shape[1])], dim=1)


def chunk_loss(model: fl.Graph, inputs: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy of the next-character predictions over a chunk ``[B, T]``."""
    logits = unroll(model, inputs)
    return functional.cross_entropy(logits.flatten(0, 1), targets.flatten())


@dataclass
class Interval:
    """What one logging interval of training measured."""

    step: int
    train_loss: float
    seconds: float
    """Time since training started."""


def chunks(
    loader: DataLoader[tuple[Tensor, Tensor]], bptt: int
) -> Iterator[tuple[bool, Tensor, Tensor]]:
    """``(first chunk of its window?, inputs, targets)`` for ever, epoch after epoch."""
    while True:
        for inputs, targets in loader:
            for begin in range(0, inputs.shape[1], bptt):
                yield begin == 0, inputs[:, begin : begin + bptt], targets[:, begin : begin + bptt]


def train(
    model: fl.Graph,
    train_set: CharacterDataset,
    *,
    steps: int,
    batch_size: int = 32,
    bptt: int = 32,
    lr: float = 3e-3,
    clip: float = 1.0,
    time_limit: float | None = None,
    log_every: int = 100,
    seed: int = 0,
    monitor: fl.Monitor | None = None,
) -> tuple[list[Interval], torch.optim.Optimizer]:
    """Train with truncated backpropagation through time for `steps` Adam steps.

    Windows are shuffled (seeded by `seed`) into batches of `batch_size`; each window
    starts from fresh state and is cut into chunks of `bptt` characters, one
    optimizer step per chunk. Training stops after `steps` steps, or at the first step
    that ends past `time_limit` seconds. The graph records every step's loss
    (`g.record`); every `log_every` steps (and at the last) `g.flush` makes their
    mean one point of history and `monitor` prints it: the monitor's "epoch" is one
    interval of `log_every` steps, and its ETA is for all `steps`. `train` finishes
    the monitor (its summary line; a dashboard it serves stops).

    Args:
        monitor: the monitor of the run (default: a new `fl.Monitor` for
            ``ceil(steps / log_every)`` intervals).

    Returns:
        the logged intervals and the optimizer (to checkpoint it).

    Raises:
        ValueError: the training set has fewer windows than one batch, or a count is
            below 1.
    """
    for name, value in (("steps", steps), ("batch_size", batch_size), ("bptt", bptt),
                        ("log_every", log_every)):  # fmt: skip
        if value < 1:
            raise ValueError(f"{name} must be at least 1, received {value}")
    if len(train_set) < batch_size:
        raise ValueError(
            f"the training set has {len(train_set)} windows, fewer than one batch of "
            f"{batch_size}; use a smaller batch_size or seq_len, or a longer text"
        )
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(
        train_set, batch_size=batch_size, shuffle=True, drop_last=True, generator=generator
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    if monitor is None:
        monitor = fl.Monitor(intervals(steps, log_every), title="char_rnn")
    model.train()
    history: list[Interval] = []
    start = time.perf_counter()
    with monitor:
        for step, (first, inputs, targets) in enumerate(chunks(loader, bptt), start=1):
            if first:
                model.reset_state()  # a new window: no state from another part of the text
            loss = chunk_loss(model, inputs, targets)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), clip)
            optimizer.step()
            model.detach_state()  # the state flows on into the next chunk, its gradient stops
            model.record("train_loss", loss)
            seconds = time.perf_counter() - start
            out_of_time = time_limit is not None and seconds >= time_limit
            if step % log_every == 0 or step == steps or out_of_time:
                means = model.flush()
                history.append(Interval(step, means["train_loss"], seconds))
                monitor.log(len(history), model)
            if step == steps or out_of_time:
                break
    model.reset_state()
    return history, optimizer


def intervals(steps: int, log_every: int) -> int:
    """How many times `train` logs in `steps` steps: every `log_every` steps and at the last."""
    return -(-steps // log_every)


def evenly_spread(count: int, total: int) -> list[int]:
    """`count` distinct indices spread evenly over ``range(total)``, first and last included."""
    count = min(count, total)
    if count == 1:
        return [0]
    return [round(i * (total - 1) / (count - 1)) for i in range(count)]


@torch.no_grad()
def evaluate(
    model: fl.Graph, dataset: CharacterDataset, *, windows: int = 64, batch_size: int = 32
) -> float:
    """Mean cross-entropy in nats per character on `windows` windows of `dataset`.

    The windows are spread evenly over the dataset (the same ones every time); each
    is read from fresh state, and every character of it counts.
    """
    if windows < 1:
        raise ValueError(f"windows must be at least 1, received {windows}")
    was_training = model.training
    model.eval()
    loader = DataLoader(Subset(dataset, evenly_spread(windows, len(dataset))), batch_size)
    total, characters = 0.0, 0
    for inputs, targets in loader:
        model.reset_state()
        logits = unroll(model, inputs)
        total += functional.cross_entropy(
            logits.flatten(0, 1), targets.flatten(), reduction="sum"
        ).item()
        characters += targets.numel()
    model.reset_state()
    model.train(was_training)
    return total / characters


@torch.no_grad()
def sample(
    model: fl.Graph,
    text: CharacterDataset,
    prompt: str,
    length: int,
    *,
    temperature: float = 0.8,
    seed: int = 0,
) -> str:
    """`length` characters generated after `prompt`, drawn at `temperature` (seeded).

    The model reads the prompt one character per call from fresh state, then each
    drawn character in turn; the next character is drawn from
    ``softmax(logits / temperature)``.

    Raises:
        ValueError: the prompt is empty or has a character outside the vocabulary, or
            `temperature` is not positive.
    """
    if not prompt:
        raise ValueError("the prompt is empty; give at least one character to start from")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, received {temperature}")
    ids = text.encode(prompt)  # names a character outside the vocabulary
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    model.reset_state()
    for character in ids:
        logits = model(character.view(1))
    drawn: list[int] = []
    for _ in range(length):
        probabilities = functional.softmax(logits[0].double() / temperature, dim=-1)
        character = torch.multinomial(probabilities, 1, generator=generator)
        drawn.append(int(character))
        if len(drawn) < length:
            logits = model(character)
    model.reset_state()
    model.train(was_training)
    return text.decode(drawn)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help=f"the text (default: {DEFAULT_DATA})"
    )
    parser.add_argument("--steps", type=int, default=400, help="optimizer steps (chunks)")
    parser.add_argument(
        "--time-limit",
        type=float,
        default=150.0,
        help="stop after this many seconds if the steps are not done (default: 150; 0: none)",
    )
    parser.add_argument("--seq-len", type=int, default=128, help="characters per window")
    parser.add_argument("--bptt", type=int, default=32, help="characters per chunk")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--embedding", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--clip", type=float, default=1.0, help="gradient norm clip")
    parser.add_argument("--log-every", type=int, default=100)
    parser.add_argument("--validation-windows", type=int, default=64)
    parser.add_argument("--prompt", default="ROMEO:")
    parser.add_argument("--sample-length", type=int, default=300)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument(
        "--threads",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="CPU threads for torch (default: 2 at most)",
    )
    parser.add_argument("--checkpoint", type=Path, default=None, help="save the model here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--dashboard", action="store_true", help="serve the live dashboard on 127.0.0.1"
    )
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    text = fl.data.shakespeare(args.data, args.seq_len)
    train_set, validation_set = text.split(1 - VALIDATION_SHARE)
    vocabulary = len(text.vocabulary)
    model = build_model(
        vocabulary, embedding=args.embedding, hidden=args.hidden, layers=args.layers
    )
    parameters = sum(p.numel() for p in model.parameters())
    print(
        f"{text.ids.numel():,} characters, {vocabulary} distinct: {len(train_set)} training "
        f"and {len(validation_set)} validation windows of {args.seq_len}; "
        f"{parameters:,} parameters, {args.threads} threads"
    )

    print(f"training: one line per {args.log_every} steps, {args.steps} steps at most")
    monitor = fl.Monitor(intervals(args.steps, args.log_every), title="char_rnn")
    if args.dashboard:
        monitor.watch(model)
        monitor.serve()
    start = time.perf_counter()
    history, optimizer = train(
        model,
        train_set,
        steps=args.steps,
        batch_size=args.batch_size,
        bptt=args.bptt,
        lr=args.lr,
        clip=args.clip,
        time_limit=args.time_limit if args.time_limit > 0 else None,
        log_every=args.log_every,
        seed=args.seed,
        monitor=monitor,
    )
    seconds = time.perf_counter() - start
    steps = history[-1].step
    if steps < args.steps:
        print(f"stopped by the time limit of {format_duration(args.time_limit)}")
    loss = evaluate(model, validation_set, windows=args.validation_windows)
    windows = min(args.validation_windows, len(validation_set))
    print(
        f"validation loss {format_metric(loss)} nats per character on {windows} windows "
        f"(uniform: ln {vocabulary} = {format_metric(math.log(vocabulary))}) "
        f"after {steps} steps in {format_duration(seconds)}"
    )
    generated = sample(
        model,
        text,
        args.prompt,
        args.sample_length,
        temperature=args.temperature,
        seed=args.seed,
    )
    print(f"sample (temperature {args.temperature}, seed {args.seed}):")
    print(args.prompt + generated)

    if args.checkpoint is not None:
        fl.save_checkpoint(
            args.checkpoint,
            model,
            optimizer,
            step=steps,
            validation_loss=loss,
            vocabulary=text.vocabulary,
            embedding=args.embedding,
            hidden=args.hidden,
            layers=args.layers,
            seconds=seconds,
        )
        print(f"saved {args.checkpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
