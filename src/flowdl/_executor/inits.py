"""Declared first-call values of state (``.tag(name, init=tensor)``) as the graph's own tensors.

A tensor given as ``init`` is registered on the graph that declares it: an
`nn.Parameter` as a parameter (learned with the rest), any other tensor as a
persistent buffer named ``<tag>_init``. So ``state_dict()`` saves it,
``load_state_dict()`` restores it, and ``.to()``, ``.double()`` and ``to_empty()``
move it with the other tensors. The meta-device recipe (build under
``with torch.device("meta")``, ``to_empty(device=...)``, ``load_state_dict(sd)``,
or ``load_state_dict(sd, assign=True)`` alone) then gives the graph an ordinary
build gives, even when the init tensor itself was made under the meta device.

The record's ``state_inits`` and the plan's state reads point at the registered
tensors; `DeclaredInits._sync_inits` points them again whenever PyTorch replaces
those tensors (``_apply``, ``load_state_dict(assign=True)``).

State dicts saved before inits were buffers (state-dict version 1) lack the
buffer; loading one, even strictly, keeps the graph's own value.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

from flowdl._executor.plan import Plan
from flowdl._ir.record import FlowRecord

if TYPE_CHECKING:
    from torch.types import Device
    from typing_extensions import Self

__all__ = ["INIT_STATE_VERSION", "DeclaredInits"]

INIT_STATE_VERSION = 2
"""The state-dict version of a graph from which tensor inits are buffers."""


class DeclaredInits(nn.Module):
    """The part of a graph that keeps its declared tensor inits (a base of `GraphCore`).

    The graph calls `_register_inits` once its record is set, and `_sync_inits` at
    the end of its ``_apply``.
    """

    _version = INIT_STATE_VERSION
    """Written by ``state_dict()`` into the state dict's metadata (PyTorch's mechanism)."""

    _record: FlowRecord
    _plan: Plan
    _init_names: Mapping[str, str] = MappingProxyType({})
    """Tag -> the name its tensor init is registered under."""

    if TYPE_CHECKING:

        def reset_state(self) -> None: ...

    def _free_name(self, name: str) -> str:
        """`name`, or `name` with underscores appended until no attribute has it."""
        while hasattr(self, name):
            name += "_"
        return name

    def _register_inits(self, record: FlowRecord) -> None:
        """Register every tensor of ``record.state_inits``: parameters as parameters,
        other tensors as persistent buffers (``<tag>_init``, made unique)."""
        names: dict[str, str] = {}
        for tag, init in record.state_inits.items():
            if not isinstance(init, Tensor):
                continue
            name = self._free_name(f"{tag}_init")
            if isinstance(init, nn.Parameter):  # a learned first-call state trains with the rest
                self.register_parameter(name, init)
            else:
                self.register_buffer(name, init)
            names[tag] = name
        self.__dict__["_init_names"] = names

    def _sync_inits(self) -> None:
        """Point the record's inits and the plan's state reads at the registered tensors."""
        inits = self._record.state_inits
        for tag, name in self._init_names.items():
            registered = getattr(self, name)
            if isinstance(registered, Tensor):
                inits[tag] = registered
        for read in self._plan.state_reads:
            read.init = inits.get(read.cell.tag)

    def to_empty(self, *, device: Device, recurse: bool = True) -> Self:
        """PyTorch's ``to_empty``; the state carried from earlier calls is forgotten.

        Its values would be uninitialised memory, as every other tensor is after
        ``to_empty`` until ``load_state_dict`` fills it; state is not in the state
        dict, so the next call starts from the declared initial values instead.
        """
        super().to_empty(device=device, recurse=recurse)
        self.reset_state()
        return self

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: Mapping[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        version = local_metadata.get("version")
        if version is None or version < INIT_STATE_VERSION:
            # Saved before tensor inits were buffers: keep the graph's own values.
            for name in self._init_names.values():
                buffer = self._buffers.get(name)
                if buffer is not None:
                    state_dict.setdefault(prefix + name, buffer)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        self._sync_inits()  # load_state_dict(assign=True) replaces the tensors
