"""The executor: a plan compiled at build time, and the `Graph` module that runs it."""
