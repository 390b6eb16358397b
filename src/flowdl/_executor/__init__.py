"""The executor: a plan compiled at build time, the loops that run it, and `GraphCore`,
the module every graph is."""
