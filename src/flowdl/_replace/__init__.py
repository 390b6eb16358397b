"""Replacing the submodules of a built graph: the plan and the constructs follow."""
