"""Checkpoints: save and restore a model, its optimizer and scheduler, safely.

One file per concept: `errors` (`CheckpointError`), `hashing` (the structural
hash), `encoding` (nested state as JSON plus tensors), `layout` (the file's names,
versions and checksums), `container` (reading a safetensors header safely), `schema`
(checking the document), `writer` and `reader` (streaming the file one tensor at a
time), `optimizer` and `scheduler` (their state), `save`, `load` (checks, then a
plan) and `restore` (carrying it out), and `info`. Files are written atomically by
`flowdl._files`.
"""
