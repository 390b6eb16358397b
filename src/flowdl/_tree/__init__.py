"""The graph tree: labelled nested graphs, dotted paths, parameters and freezing by path."""
