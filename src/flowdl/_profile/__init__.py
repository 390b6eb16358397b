"""Profiling: where the time of a forward goes, per node and per level."""
