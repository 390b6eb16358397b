"""Hearing replaced submodules: the mechanism graphs and constructs use to follow a swap."""
