"""A benchmark model written twice: plain PyTorch and a flowdl graph with the same weights.

Every model file builds a `ModelPair`: the hand-written module, a deep copy of it
(`twin`) whose submodules the graph is assembled from, the graph, and how to make a
batch and score it. Sizes shrink with a scale factor (`scaled`); the structure
(depth, steps, iterations, experts) never does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import Tensor, nn

import flowdl as fl
from flowdl._errors import FlowdlError
from flowdl._graph import Graph

Batch = tuple[Tensor, Tensor]
"""``(input, target)``."""

LossFn = Callable[[Tensor, Tensor], Tensor]
"""``loss_fn(output, target) -> scalar``."""


M = TypeVar("M", bound=nn.Module)


class ParityError(FlowdlError, RuntimeError):
    """The two formulations of a model computed different losses on the same batch."""


@dataclass
class ModelPair:
    """One benchmark model, hand-written and as a flowdl graph, sharing their weights.

    Attributes:
        name: the model's name in the suite (``"mlp"``, ...).
        torch_model: the plain PyTorch module.
        twin: a deep copy of `torch_model` whose parameters are exactly the graph's,
            name for name: ``twin.named_parameters()`` pairs each graph parameter
            with its counterpart in `torch_model`.
        graph: the flowdl graph.
        make_batch: a fresh random batch on a device.
        loss_fn: ``loss_fn(output, target)``.
        lr: Adam's learning rate.
        sizes: what the scale made of the sizes (batch, widths, ...), for the report.
        cudnn_benchmark: whether cuDNN may autotune (floDl turns it off for the RNNs).
        formulation: one line on how the graph is written, for the report.
    """

    name: str
    torch_model: nn.Module
    twin: nn.Module
    graph: Graph
    make_batch: Callable[[torch.device], Batch]
    loss_fn: LossFn
    sizes: dict[str, int]
    lr: float = 1e-3
    cudnn_benchmark: bool = True
    formulation: str = ""

    def to(self, device: torch.device) -> ModelPair:
        """Move both models (and the twin, which shares the graph's tensors) to `device`."""
        self.torch_model.to(device)
        self.twin.to(device)
        self.graph.to(device)
        return self

    def parameter_count(self) -> int:
        """Parameters of the hand-written model (the graph has the same)."""
        return sum(p.numel() for p in self.torch_model.parameters())

    def parameter_pairs(self) -> list[tuple[str, nn.Parameter, nn.Parameter]]:
        """``(name, torch_parameter, graph_parameter)`` for every parameter.

        Raises:
            ParityError: the graph's parameters are not exactly the twin's.
        """
        ours = dict(self.torch_model.named_parameters())
        theirs = dict(self.twin.named_parameters())
        in_graph = {id(p) for p in self.graph.parameters()}
        if ours.keys() != theirs.keys() or in_graph != {id(p) for p in theirs.values()}:
            raise ParityError(
                f"{self.name}: the graph's parameters are not those of the hand-written "
                f"model's copy ({len(in_graph)} in the graph, {len(theirs)} in the copy); "
                "build the graph from the twin's submodules"
            )
        return [(name, p, theirs[name]) for name, p in ours.items()]

    def check_same_loss(self, batch: Batch, rtol: float = 1e-4, atol: float = 1e-5) -> float:
        """Both models' loss on `batch`; they must agree.

        Returns:
            the loss.

        Raises:
            ParityError: the losses differ beyond the tolerance, or the parameters
                are not paired.
        """
        self.parameter_pairs()
        x, y = batch
        with torch.no_grad():
            want = float(self.loss_fn(self.torch_model(x), y))
            got = float(self.loss_fn(self.graph(x), y))
        if not abs(got - want) <= atol + rtol * abs(want):
            raise ParityError(
                f"{self.name}: the flowdl graph computes loss {got!r} but the hand-written "
                f"PyTorch model computes {want!r} on the same batch and weights (tolerance "
                f"rtol={rtol}, atol={atol}); the two formulations in flowdl/_bench/models "
                "are not the same model"
            )
        return want


def scaled(size: int, scale: float, minimum: int = 1, multiple: int = 1) -> int:
    """``size × scale`` rounded to a multiple of `multiple`, at least `minimum`.

    Example:
        >>> scaled(1024, 0.25), scaled(50, 0.01, minimum=4), scaled(512, 0.1, multiple=8)
        (256, 4, 48)
    """
    return max(minimum, multiple * round(size * scale / multiple))


def noise_regression(
    x_shape: tuple[int, ...], y_shape: tuple[int, ...]
) -> Callable[[torch.device], Batch]:
    """Batches of ``randn(x_shape)`` inputs and ``randn(y_shape)`` targets (floDl's data).

    Example:
        >>> x, y = noise_regression((2, 3), (2, 1))(torch.device("cpu"))
        >>> x.shape, y.shape
        (torch.Size([2, 3]), torch.Size([2, 1]))
    """

    def make(device: torch.device) -> Batch:
        return torch.randn(x_shape, device=device), torch.randn(y_shape, device=device)

    return make


def mse(output: Tensor, target: Tensor) -> Tensor:
    """Mean squared error: the loss of every model but the transformer."""
    return nn.functional.mse_loss(output, target)


def chain(modules: Iterable[nn.Module]) -> fl.Flow:
    """``fl.Flow(m0).through(m1).through(m2)...`` over `modules`.

    Example:
        >>> chain([nn.Linear(2, 3), nn.ReLU()]).build()(torch.zeros(1, 2)).shape
        torch.Size([1, 3])
    """
    first, *rest = modules
    flow = fl.Flow(first)
    for module in rest:
        flow = flow.through(module)
    return flow


def members(modules: nn.ModuleList, kind: type[M]) -> list[M]:
    """The modules of `modules`, each checked to be a `kind` (and typed so).

    Example:
        >>> members(nn.ModuleList([nn.ReLU(), nn.ReLU()]), nn.ReLU)
        [ReLU(), ReLU()]
    """
    found = [m for m in modules if isinstance(m, kind)]
    if len(found) != len(modules):
        raise TypeError(f"expected only {kind.__name__} modules in {modules}")
    return found
