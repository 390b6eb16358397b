"""Replacement, a feature of `fl.Graph`: the graph's record and plan follow a replaced
submodule. The mechanism that hears the replacement is in `flowdl._watch`."""
