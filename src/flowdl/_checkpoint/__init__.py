"""Checkpoints: save and restore a model, its optimizer and scheduler, safely.

One file per concept: `errors` (`CheckpointError`), `hashing` (the structural
hash), `encoding` (nested state as JSON plus tensors), `container` (the file:
safetensors with a checksum), `optimizer` and `scheduler` (their state), `save`, `load`
and `info`. Files are written atomically by `flowdl._files`.
"""
