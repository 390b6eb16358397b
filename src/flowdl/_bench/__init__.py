"""The benchmark suite behind ``python -m flowdl bench``.

floDl's ten models, each written twice — plain PyTorch and a flowdl graph holding the
same weights — timed under one protocol in one process (`flowdl._bench.suite`), with
go-torch's table of single operations (`flowdl._bench.ops`) and the executor's cost
per node (`flowdl._bench.overhead`). `flowdl._bench.report` writes the results as
Markdown or JSON. `flowdl._bench.dynamic` is issue 17's dynamic suite (``--suite
dynamic``). Nothing here is public API.
"""
