"""What a graph is made of, before it runs: the builder's record and the module contracts."""
