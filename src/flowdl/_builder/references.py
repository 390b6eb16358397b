"""References: `using`, backward (same call) and forward (previous call, i.e. state)."""

from __future__ import annotations

import difflib
from typing import TypeVar

from flowdl._builder.arguments import check_name
from flowdl._builder.core import FlowCore, builder_call
from flowdl._errors import BuildError
from flowdl._ir.nodes import BuilderCall, NodeKind

R = TypeVar("R", bound="ReferencesMixin")


class ReferencesMixin(FlowCore):
    """`using` and the wiring of references."""

    @builder_call
    def using(self: R, *tags: str) -> R:
        """Feed tagged values to the last node as extra inputs, after the stream.

        A tag defined earlier is a backward reference: its value from this call. A
        tag defined later is a forward reference: its value from the *previous*
        call (recurrent state; zeros on the first call, see `tag`'s ``init``). The
        last node is the module of `through`, `also` or `fork`, the `merge`, or
        every branch after `split`. A module with ``forward_named(x, refs)``
        receives the references as a dict by tag; others receive them positionally.

        Args:
            *tags: the tags (or inputs) to read, in the order the module receives them.

        Returns:
            a new flow; the flow it is called on is unchanged.

        Raises:
            BuildError: a tag given twice or not a valid name; at `build`, a tag
                that is never defined.

        Example:
            >>> import torch, flowdl as fl
            >>> g = (fl.Flow(torch.nn.Identity())
            ...        .through(fl.StateAdd()).using("memory").tag("memory")
            ...        .build())
            >>> x = torch.tensor([1.0, 2.0])
            >>> [g(x).tolist() for _ in range(3)]
            [[1.0, 2.0], [2.0, 4.0], [3.0, 6.0]]
        """
        call = self._next_call("using", tags)
        for k, tag in enumerate(tags):
            check_name(tag, "tag", call)
            if tag in tags[:k]:
                once = ", ".join(map(repr, dict.fromkeys(tags)))
                raise BuildError(
                    f"the tag {tag!r} is listed twice in {call.text}",
                    call=str(call),
                    expected="each tag once: a node reads each reference once",
                    received=f"{len(tags)} tags: {', '.join(map(repr, tags))}",
                    fix=f"list it once: .using({once})",
                )
            if tag in self._groups:
                members = self._groups[tag]
                raise BuildError(
                    f"{tag!r} is a tag group, not a tag: .using() reads single tags",
                    call=str(call),
                    expected=f"a tag; the members of group {tag!r} are {', '.join(members)}",
                    received=repr(tag),
                    fix=f".using({', '.join(map(repr, members))}) to read every branch",
                )
        for target in self._targets:
            node = self._nodes[target]
            seen = set(node.ref_names)
            for tag in tags:
                if tag in seen:
                    raise BuildError(
                        f"{node.id} is given the reference {tag!r} twice",
                        call=str(call),
                        expected="each reference once per node",
                        received=f"{tag!r} again (already wired: {node.ref_names})",
                        fix=f"remove the repeated {tag!r}",
                    )
                seen.add(tag)
                if tag in self._tags and self._depends_on(self._tags[tag], target):
                    producer = self._nodes[self._tags[tag]]
                    raise BuildError(
                        f"{node.id} cannot read {tag!r} in the same call: {tag!r} names "
                        f"{producer.id}, which is computed from {node.id}'s own output",
                        call=str(call),
                        expected="a tag defined before the node it feeds",
                        received=f"{tag!r}, defined at {producer.call}",
                        fix=f"to read the previous call's value (recurrent state), call "
                        f".using({tag!r}) before .tag({tag!r})",
                    )
        self._calls.append(call)
        for target in self._targets:
            for tag in tags:
                self._wire_ref(target, tag, call)
        return self

    def _wire_ref(self, target: int, tag: str, call: BuilderCall) -> None:
        node = self._own(target)
        if tag in self._tags:
            producer = self._tags[tag]
        else:
            producer = self._add_node(
                NodeKind.STATE_READ,
                f"state_{tag}",
                call,
                inputs=[],
                n_stream=0,
                state_tag=tag,
                like=node.inputs[0],
                consumer=target,
            )
            self._pending_refs[tag] = [*self._pending_refs.get(tag, ()), producer]
        node.inputs.append(producer)
        node.ref_names.append(tag)
        node.ref_calls.append(call)

    def _depends_on(self, node: int, target: int) -> bool:
        """Whether `node`'s value (in this call) is computed from `target`'s."""
        stack, seen = [node], set()
        while stack:
            n = stack.pop()
            if n == target:
                return True
            if n not in seen:
                seen.add(n)
                stack.extend(self._nodes[n].dependencies)
        return False

    def _raise_unresolved(self) -> None:
        tag, readers = next(iter(self._pending_refs.items()))
        reader = self._nodes[readers[0]]
        known = sorted(self._tags)
        close = difflib.get_close_matches(tag, known, n=1)
        maybe = f"Did you mean {close[0]!r}? " if close else ""
        others = [t for t in self._pending_refs if t != tag]
        raise BuildError(
            f".using({tag!r}) refers to a tag that is never defined"
            + (f" (so do {others})" if others else ""),
            call=str(reader.call),
            expected="a tag defined by .tag(), .tag_group() or .input(); known tags: "
            + (", ".join(known) if known else "none"),
            received=repr(tag),
            fix=maybe + "A tag read before it is defined carries the previous call's value "
            f"(a forward reference): define it later with .tag({tag!r})",
        )
