"""examples/char_rnn.py: the step graph against a fused PyTorch GRU, training, sampling, main()."""

from __future__ import annotations

import io
import math
import random
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest
import torch
from torch import Tensor, nn
from torch.nn import functional

import flowdl as fl
from flowdl._format import format_metric
from flowdl.data import CharacterDataset
from tests.examples.support import load_example


@pytest.fixture(scope="module")
def example() -> ModuleType:
    return load_example("char_rnn")


class Reference(nn.Module):
    """The same network written by hand: embedding, a fused multi-layer `nn.GRU`, head.

    Its weights are copies of the step graph's (`nn.GRU` and `nn.GRUCell` share the
    gate layout), so the two compute the same function by different code.
    """

    def __init__(self, model: fl.Graph) -> None:
        super().__init__()
        modules = list(model.children())
        embedding, head = modules[0], modules[-1]
        cells = modules[1:-1]
        assert isinstance(embedding, nn.Embedding)
        assert isinstance(head, nn.Linear)
        assert all(isinstance(cell, nn.GRUCell) for cell in cells)
        self.embedding = nn.Embedding(embedding.num_embeddings, embedding.embedding_dim)
        self.gru = nn.GRU(
            embedding.embedding_dim, cells[0].hidden_size, num_layers=len(cells), batch_first=True
        )
        self.head = nn.Linear(head.in_features, head.out_features)
        self.to(embedding.weight.dtype)
        with torch.no_grad():
            self.embedding.weight.copy_(embedding.weight)
            for layer, cell in enumerate(cells):
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(self.gru, f"{name}_l{layer}").copy_(getattr(cell, name))
            self.head.weight.copy_(head.weight)
            self.head.bias.copy_(head.bias)
        self.pairs = [  # (graph parameter, reference parameter), for gradients
            (embedding.weight, self.embedding.weight),
            *(
                (getattr(cell, name), getattr(self.gru, f"{name}_l{layer}"))
                for layer, cell in enumerate(cells)
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            ),
            (head.weight, self.head.weight),
            (head.bias, self.head.bias),
        ]
        assert len(self.pairs) == len(list(model.parameters()))

    def forward(self, inputs: Tensor, state: Tensor | None) -> tuple[Tensor, Tensor]:
        outputs, state = self.gru(self.embedding(inputs), state)
        logits: Tensor = self.head(outputs)
        return logits, state


def small_model(example: ModuleType, vocab_size: int = 7, layers: int = 2) -> fl.Graph:
    model: fl.Graph = example.build_model(vocab_size, embedding=5, hidden=6, layers=layers)
    return model.double()


def test_the_model_is_a_step_graph_with_forward_references(example: ModuleType) -> None:
    model = example.build_model(65)
    assert isinstance(model, fl.Graph)
    assert model.backprop_state
    kinds = [type(m).__name__ for m in model.children()]
    assert kinds == ["Embedding", "GRUCell", "Linear"]
    ids = torch.tensor([0, 5, 64])
    first = model(ids)
    assert first.shape == (3, 65)
    second = model(ids)  # the same input, but the state has moved on
    assert not torch.allclose(first, second)
    model.reset_state()
    torch.testing.assert_close(model(ids), first, rtol=0, atol=0)
    assert [type(m).__name__ for m in example.build_model(9, layers=3).children()] == [
        "Embedding", "GRUCell", "GRUCell", "GRUCell", "Linear",
    ]  # fmt: skip


def chunked_gradients(
    example: ModuleType, model: fl.Graph, inputs: Tensor, targets: Tensor, bptt: int
) -> list[tuple[Tensor, list[Tensor]]]:
    """Loss and gradients of every chunk, the flowdl way: the state crosses calls."""
    results = []
    model.reset_state()
    for begin in range(0, inputs.shape[1], bptt):
        model.zero_grad()
        loss = example.chunk_loss(model, inputs[:, begin : begin + bptt],
                                  targets[:, begin : begin + bptt])  # fmt: skip
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
        model.detach_state()
    return results


def test_chunk_losses_and_gradients_equal_a_fused_gru(example: ModuleType) -> None:
    model = small_model(example)
    reference = Reference(model)
    inputs, targets = torch.randint(0, 7, (3, 7)), torch.randint(0, 7, (3, 7))
    flowdl_chunks = chunked_gradients(example, model, inputs, targets, bptt=4)
    assert len(flowdl_chunks) == 2  # 4 characters, then 3
    state = None
    for (loss, gradients), begin in zip(flowdl_chunks, (0, 4), strict=True):
        reference.zero_grad()
        logits, state = reference(inputs[:, begin : begin + 4], state)
        want = functional.cross_entropy(
            logits.flatten(0, 1), targets[:, begin : begin + 4].flatten()
        )
        want.backward()
        state = state.detach()  # truncated: the second chunk starts from the first's state
        torch.testing.assert_close(loss, want.detach(), rtol=0, atol=1e-12)
        for got, (_, theirs) in zip(gradients, reference.pairs, strict=True):
            assert theirs.grad is not None
            torch.testing.assert_close(got, theirs.grad, rtol=0, atol=1e-12)


def test_without_backprop_state_the_gradients_miss_the_past(example: ModuleType) -> None:
    """The oracle test above depends on backprop_state: without it a chunk learns less."""
    model = small_model(example)
    inputs, targets = torch.randint(0, 7, (3, 4)), torch.randint(0, 7, (3, 4))
    [(loss_with, with_history)] = chunked_gradients(example, model, inputs, targets, bptt=4)
    model.backprop_state = False
    [(loss_without, without)] = chunked_gradients(example, model, inputs, targets, bptt=4)
    torch.testing.assert_close(loss_with, loss_without, rtol=0, atol=0)  # same forward
    embedding, recurrent = 0, 2  # GRUCell_0.weight_hh only learns from earlier steps
    assert not torch.allclose(with_history[embedding], without[embedding])
    assert not torch.allclose(with_history[recurrent], without[recurrent])


def test_train_takes_the_same_adam_steps_as_the_reference(example: ModuleType) -> None:
    torch.manual_seed(1)
    model = small_model(example, vocab_size=5)
    reference = Reference(model)
    text = "abcdeedcbaabceeabdcdae"  # 22 characters: 3 windows of 6; batch 3 -> one batch
    windows = CharacterDataset(text, seq_len=6)
    assert (len(windows), len(windows.vocabulary)) == (3, 5)
    output = io.StringIO()
    monitor = fl.Monitor(4, output=output, resources=False)
    history, _ = example.train(
        model, windows, steps=4, batch_size=3, bptt=3, lr=0.05, clip=0.2,
        log_every=1, monitor=monitor,
    )  # fmt: skip
    # By hand: every epoch is the same batch of 3 windows (their order does not change a
    # mean over the batch), each cut into 2 chunks; Adam and clipping as in train().
    optimizer = torch.optim.Adam(reference.parameters(), lr=0.05)
    inputs = torch.stack([windows[i][0] for i in range(3)])
    targets = torch.stack([windows[i][1] for i in range(3)])
    losses, norms = [], []
    for _ in range(2):
        state = None
        for begin in (0, 3):
            logits, state = reference(inputs[:, begin : begin + 3], state)
            loss = functional.cross_entropy(logits.flatten(0, 1),
                                            targets[:, begin : begin + 3].flatten())  # fmt: skip
            optimizer.zero_grad()
            loss.backward()
            norms.append(float(nn.utils.clip_grad_norm_(reference.parameters(), 0.2)))
            optimizer.step()
            state = state.detach()
            losses.append(loss.item())
    assert max(norms) > 0.2  # the clip did act
    assert [interval.step for interval in history] == [1, 2, 3, 4]
    assert [interval.train_loss for interval in history] == pytest.approx(losses, abs=1e-12)
    for ours, theirs in reference.pairs:
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-10)
    lines = output.getvalue().splitlines()
    assert [line.split("  [")[0] for line in lines[:4]] == [
        f"epoch {i}/4  train_loss={format_metric(loss)}" for i, loss in enumerate(losses, 1)
    ]
    assert lines[4].startswith("done: 4/4 epochs in ")
    assert monitor.finished
    assert model.trend("train_loss").values == tuple(i.train_loss for i in history)
    assert all(interval.seconds > 0 for interval in history)


def test_evaluate_is_the_mean_cross_entropy_on_evenly_spread_windows(
    example: ModuleType,
) -> None:
    assert example.evenly_spread(3, 5) == [0, 2, 4]
    assert example.evenly_spread(1, 5) == [0]
    assert example.evenly_spread(9, 4) == [0, 1, 2, 3]
    spread = example.evenly_spread(64, 871)
    assert len(set(spread)) == 64
    assert (spread[0], spread[-1]) == (0, 870)
    model = small_model(example, vocab_size=5)
    model(torch.tensor([1, 2]))  # leftover state of another batch size must not matter
    reference = Reference(model)
    windows = CharacterDataset("abcdeedcbaabceeabdcdaeabcdeaaaaabbbbcdecde", seq_len=8)
    assert len(windows) == 5
    got = example.evaluate(model, windows, windows=3, batch_size=2)
    inputs = torch.stack([windows[i][0] for i in (0, 2, 4)])
    targets = torch.stack([windows[i][1] for i in (0, 2, 4)])
    with torch.no_grad():
        logits, _ = reference(inputs, None)
        want = functional.cross_entropy(logits.flatten(0, 1), targets.flatten()).item()
    assert got == pytest.approx(want, abs=1e-12)
    assert model.training  # evaluate puts the mode back


def reference_sample(
    reference: Reference, text: CharacterDataset, prompt: str, length: int,
    temperature: float, seed: int,
) -> str:  # fmt: skip
    """Sampling by hand with the fused GRU, drawing from the same generator in the same order."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        logits, state = reference(text.encode(prompt).unsqueeze(0), None)
        last = logits[0, -1]
        drawn = []
        for _ in range(length):
            probabilities = functional.softmax(last.double() / temperature, dim=-1)
            character = torch.multinomial(probabilities, 1, generator=generator)
            drawn.append(int(character))
            logits, state = reference(character.view(1, 1), state)
            last = logits[0, -1]
    return text.decode(drawn)


def test_sample_draws_what_the_reference_draws(example: ModuleType) -> None:
    text = CharacterDataset("to be or not to be, that is the question.", seq_len=4)
    model = small_model(example, vocab_size=len(text.vocabulary))
    reference = Reference(model)
    got = example.sample(model, text, "to b", 40, temperature=0.9, seed=3)
    assert len(got) == 40
    assert set(got) <= set(text.vocabulary)
    assert got == reference_sample(reference, text, "to b", 40, temperature=0.9, seed=3)
    assert example.sample(model, text, "to b", 40, temperature=0.9, seed=3) == got
    assert example.sample(model, text, "to b", 40, temperature=0.9, seed=4) != got
    cold = example.sample(model, text, "q", 20, temperature=1e-3, seed=0)
    with torch.no_grad():  # nearly zero temperature: the most likely character every time
        logits, state = reference(text.encode("q").unsqueeze(0), None)
        greedy = []
        for _ in range(20):
            greedy.append(int(logits[0, -1].argmax()))
            logits, state = reference(torch.tensor([[greedy[-1]]]), state)
    assert cold == text.decode(greedy)
    assert model.training


def test_sample_refuses_bad_prompts_and_temperatures(example: ModuleType) -> None:
    text = CharacterDataset("abcabcabc", seq_len=2)
    model = example.build_model(3, embedding=4, hidden=4)
    with pytest.raises(ValueError, match=r"character 'z' \(at position 2\) is not in the vocab"):
        example.sample(model, text, "abz", 5)
    with pytest.raises(ValueError, match="the prompt is empty"):
        example.sample(model, text, "", 5)
    with pytest.raises(ValueError, match="temperature must be positive, received 0"):
        example.sample(model, text, "a", 5, temperature=0)


def generated_text(characters: int, seed: int) -> str:
    """Random sentences over a few words: predictable within a word, not across."""
    words = ["to", "be", "or", "not", "that", "is", "the", "question"]
    chooser = random.Random(seed)
    parts: list[str] = []
    while sum(len(p) + 1 for p in parts) < characters:
        parts.append(" ".join(chooser.choice(words) for _ in range(chooser.randint(3, 7))) + ".")
    return "\n".join(parts)


def entropy_of_characters(text: str) -> float:
    """The loss of the best model that ignores context (nats per character)."""
    counts = Counter(text)
    return -sum(n / len(text) * math.log(n / len(text)) for n in counts.values())


def test_training_learns_a_generated_text(example: ModuleType) -> None:
    text = CharacterDataset(generated_text(6000, seed=0), seq_len=32)
    train_set, validation_set = text.split(0.9)
    vocab_size = len(text.vocabulary)
    model = example.build_model(vocab_size, embedding=16, hidden=48)
    before = example.evaluate(model, validation_set, windows=8)
    output = io.StringIO()
    history, optimizer = example.train(
        model, train_set, steps=120, batch_size=8, bptt=16, lr=1e-2, log_every=40,
        monitor=fl.Monitor(example.intervals(120, 40), output=output, resources=False),
    )  # fmt: skip
    lines = output.getvalue().splitlines()
    after = example.evaluate(model, validation_set, windows=8)
    assert [interval.step for interval in history] == [40, 80, 120]
    assert [line.split("  ")[0] for line in lines[:3]] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert lines[3].startswith("done: 3/3 epochs in ")
    assert len(lines) == 4
    assert before > 0.9 * math.log(vocab_size)  # untrained: about uniform
    assert history[-1].train_loss < history[0].train_loss
    # Below what the character frequencies alone give: the model uses its state.
    assert after < entropy_of_characters(text.decode(train_set.ids)) - 0.3
    assert optimizer.state_dict()["state"]  # Adam has moments to checkpoint
    sampled = example.sample(model, text, "to ", 60, seed=0)
    assert len(sampled) == 60
    assert set(sampled) <= set(text.vocabulary)


def test_train_stops_at_the_time_limit(example: ModuleType) -> None:
    text = CharacterDataset(generated_text(500, seed=1), seq_len=8)
    model = example.build_model(len(text.vocabulary), embedding=4, hidden=4)
    output = io.StringIO()
    monitor = fl.Monitor(example.intervals(10**6, 100), output=output, resources=False)
    history, _ = example.train(
        model, text, steps=10**6, batch_size=2, bptt=4, time_limit=0.0, monitor=monitor
    )
    assert [interval.step for interval in history] == [1]
    lines = output.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("epoch     1/10000  train_loss=")
    assert lines[1].startswith("done: 1/10000 epochs in ")


def test_train_refuses_a_set_smaller_than_a_batch(example: ModuleType) -> None:
    text = CharacterDataset("abcabcabcab", seq_len=5)  # 2 windows
    model = example.build_model(3, embedding=4, hidden=4)
    with pytest.raises(ValueError, match="the training set has 2 windows, fewer than one batch"):
        example.train(model, text, steps=1, batch_size=3)
    with pytest.raises(ValueError, match="steps must be at least 1, received 0"):
        example.train(model, text, steps=0, batch_size=2)


def test_main_trains_evaluates_samples_and_saves(
    example: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "input.txt"
    data.write_text(generated_text(4000, seed=2))
    checkpoint = tmp_path / "char_rnn.safetensors"
    arguments = ["--data", str(data), "--steps", "6", "--seq-len", "16", "--bptt", "8"]
    arguments += ["--batch-size", "4", "--embedding", "8", "--hidden", "12", "--layers", "2"]
    arguments += ["--log-every", "3", "--validation-windows", "5", "--prompt", "the "]
    arguments += ["--sample-length", "30", "--threads", "1", "--checkpoint", str(checkpoint)]
    threads = torch.get_num_threads()
    try:
        code = example.main(arguments)
    finally:
        torch.set_num_threads(threads)  # main() sets it for the whole process
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    text = fl.data.shakespeare(data, 16)
    vocab_size = len(text.vocabulary)
    cells = 3 * 12 * (8 + 12 + 2) + 3 * 12 * (12 + 12 + 2)
    parameters = vocab_size * 8 + cells + 12 * vocab_size + vocab_size
    assert out[0].startswith(f"{text.ids.numel():,} characters, {vocab_size} distinct: ")
    assert out[0].endswith(f"validation windows of 16; {parameters:,} parameters, 1 threads")
    assert out[1] == "training: one line per 3 steps, 6 steps at most"
    assert [line.split("  ")[0] for line in out[2:4]] == ["epoch 1/2", "epoch 2/2"]
    assert out[4].startswith("done: 2/2 epochs in ")
    assert out[2].split("  ")[1].startswith("train_loss=")
    assert out[5].startswith("validation loss ")
    uniform = f"(uniform: ln {vocab_size} = {math.log(vocab_size):.4f})"
    assert f"nats per character on 5 windows {uniform} after 6 steps in" in out[5]
    assert out[6] == "sample (temperature 0.8, seed 0):"
    assert out[7].startswith("the ")
    assert out[-1] == f"saved {checkpoint}"
    info = fl.checkpoint_info(checkpoint)
    assert info.optimizer == "Adam"
    assert info.extra["step"] == 6
    assert (info.extra["embedding"], info.extra["hidden"], info.extra["layers"]) == (8, 12, 2)
    vocabulary = info.extra["vocabulary"]
    fresh = example.build_model(len(vocabulary), embedding=8, hidden=12, layers=2)
    fl.load_checkpoint(checkpoint, fresh)
    assert text.vocabulary == vocabulary
    _, validation_set = text.split(0.9)
    reloaded = example.evaluate(fresh, validation_set, windows=5)
    assert reloaded == info.extra["validation_loss"]
