"""flowdl: write dynamic neural networks as graphs, on PyTorch.

The public surface is re-exported here; everything in ``flowdl._*`` is internal.

Example:
    >>> import torch, flowdl as fl
    >>> from torch import nn
    >>> g = (fl.Flow(nn.Linear(2, 16))
    ...        .through(nn.GELU())
    ...        .also(nn.Linear(16, 16))
    ...        .through(nn.Linear(16, 2))
    ...        .build())
    >>> g(torch.randn(4, 2)).shape
    torch.Size([4, 2])
"""

from flowdl import data, protocols
from flowdl._builder.flow import Flow, NodeLike
from flowdl._builder.open_builders import LoopBuilder, MapBuilder
from flowdl._checkpoint.errors import CheckpointError
from flowdl._checkpoint.hashing import structural_hash
from flowdl._checkpoint.info import CheckpointInfo, checkpoint_info
from flowdl._checkpoint.load import load_checkpoint
from flowdl._checkpoint.report import LoadReport
from flowdl._checkpoint.save import save_checkpoint
from flowdl._checkpoint.sharded import (
    consolidate_checkpoint,
    load_sharded_checkpoint,
    save_sharded_checkpoint,
)
from flowdl._context import Context
from flowdl._control.routing import RoutingUsage
from flowdl._draw.summary import Summary
from flowdl._errors import BuildError, Cancelled, DeadlineExceeded, GraphError
from flowdl._graph import Graph
from flowdl._monitor.monitor import Monitor
from flowdl._nodes.halts import LearnedHalt, ThresholdHalt
from flowdl._nodes.merge import Add, Cat, Mean
from flowdl._nodes.reshape import Reshape
from flowdl._nodes.routers import SigmoidRouter, SoftmaxRouter, TopKRouter
from flowdl._nodes.selectors import ArgmaxSelector, FixedSelector
from flowdl._nodes.state_add import StateAdd
from flowdl._observe.trend import Trend
from flowdl._observe.trend_group import TrendGroup
from flowdl._profile.profile import Profile
from flowdl._tree.paths import PathKind
from flowdl._version import __version__

__all__ = [
    "Add",
    "ArgmaxSelector",
    "BuildError",
    "Cancelled",
    "Cat",
    "CheckpointError",
    "CheckpointInfo",
    "Context",
    "DeadlineExceeded",
    "FixedSelector",
    "Flow",
    "Graph",
    "GraphError",
    "LearnedHalt",
    "LoadReport",
    "LoopBuilder",
    "MapBuilder",
    "Mean",
    "Monitor",
    "NodeLike",
    "PathKind",
    "Profile",
    "Reshape",
    "RoutingUsage",
    "SigmoidRouter",
    "SoftmaxRouter",
    "StateAdd",
    "Summary",
    "ThresholdHalt",
    "TopKRouter",
    "Trend",
    "TrendGroup",
    "__version__",
    "checkpoint_info",
    "consolidate_checkpoint",
    "data",
    "load_checkpoint",
    "load_sharded_checkpoint",
    "protocols",
    "save_checkpoint",
    "save_sharded_checkpoint",
    "structural_hash",
]
