"""The dynamic suite (issue 17): ``python -m flowdl bench --suite dynamic``.

Five dynamic models — per-sample switch, top-2 of 8 experts, per-sample halting,
many small heads, a recurrent cell over sequences of varying length — each written
by hand with indexing, with masks, and compiled by `torch.compile`, and as a flowdl
graph run eagerly and in fast mode (`flowdl._bench.dynamic.run`).
"""
