"""The structural hash moves with every builder argument that changes what a graph computes.

Random descriptions of graphs (`tests.checkpoint.hash_strategies`): rebuilding one
gives the same hash, renaming its tags or labelling it does not change the hash, and
changing any one argument of any builder call (a loop's count or mode, a halt
condition, a router's `k`, an expert, a merge, a map option, a declared initial
value, a residual, the direction of a reference, an input name) changes it.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings

import flowdl as fl
from tests.checkpoint import hash_strategies as hs

h = fl.structural_hash


def _holds_tensor_init(desc: Any) -> bool:
    """Whether a declared init is a tensor: its parameter or buffer is named after its tag."""
    if isinstance(desc, tuple):
        if desc[:1] == ("state",) and desc[1] is not None and desc[1][0] in ("tensor", "param"):
            return True
        return any(_holds_tensor_init(d) for d in desc)
    return False


@settings(max_examples=60, deadline=None)
@given(hs.descriptions())
def test_every_argument_that_changes_the_computation_changes_the_hash(desc: hs.Desc) -> None:
    base = h(hs.build(desc))
    assert h(hs.build(desc)) == base  # fresh modules, the same description
    if not _holds_tensor_init(desc):
        assert h(hs.build(desc, prefix="renamed_", label="named")) == base
    changed = list(hs.mutations(desc))
    assert changed
    for what, mutated in changed:
        assert mutated != desc, what
        assert h(hs.build(mutated)) != base, f"the hash did not move: {what}\n{desc}"
