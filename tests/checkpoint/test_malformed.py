"""Malformed checkpoints whose checksum is right: every field is checked before anything loads.

The files here are rewritten with a correct checksum, so what refuses them is the
check of the header and the document, not the checksum.
"""

from __future__ import annotations

import copy
import functools
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.optim import lr_scheduler

import flowdl as fl
from flowdl._checkpoint import container
from tests.checkpoint.helpers import assert_same
from tests.checkpoint.test_refusals import Trained, make

HUGE = "<5000 digits>"
HELD = Path(__file__).parent / "data" / "version1.safetensors"


@functools.cache
def good_bytes() -> bytes:
    source = Trained(seed=0)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "good.safetensors"
        fl.save_checkpoint(path, source.model, source.optimizer, source.scheduler, epoch=2, x=1)
        return path.read_bytes()


def split(data: bytes) -> tuple[dict[str, Any], dict[str, Any], bytes]:
    """The header (without metadata), the document, and the tensor data of a file."""
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + length])
    document = json.loads(header.pop("__metadata__")["flowdl.checkpoint"])
    return header, document, data[8 + length :]


def join(
    header: dict[str, Any], document: Any, data: bytes, raw_document: str = "", version: str = "2"
) -> bytes:
    """A file of `header`, `document` and `data`, with its checksum computed as flowdl's."""
    metadata = {
        "format": "flowdl.checkpoint",
        "flowdl.format_version": version,
        "flowdl.checkpoint": raw_document or json.dumps(document).replace(f'"{HUGE}"', "9" * 5000),
        "flowdl.checksum": "0" * 32,
    }
    text = (
        json.dumps({"__metadata__": metadata, **header}).replace(f'"{HUGE}"', "9" * 5000).encode()
    )
    raw = len(text).to_bytes(8, "little") + text
    hasher = xxhash.xxh3_128(raw)  # the documented format 2 checksum, written out here
    for start in range(0, len(data), 16 << 20):
        hasher.update(xxhash.xxh3_128(data[start : start + (16 << 20)]).digest())
    digest = hasher.hexdigest()
    text = text.replace(
        b'"flowdl.checksum": "' + b"0" * 32, b'"flowdl.checksum": "' + digest.encode()
    )
    return len(text).to_bytes(8, "little") + text + data


def json_values() -> st.SearchStrategy[Any]:
    leaves = st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=5),
        st.just(HUGE),  # becomes a 5,000-digit number
    )  # fmt: skip
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)
        ),
        max_leaves=6,
    )


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON value (dict keys and list positions)."""
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            out += paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out += paths(item, (*prefix, i))
    return out


def edit(value: Any, path: tuple[Any, ...], new: Any, delete: bool) -> Any:
    value = copy.deepcopy(value)
    parent = value
    for key in path[:-1]:
        parent = parent[key]
    if delete and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = new
    return value


@functools.cache
def target() -> Trained:
    return Trained(seed=1)


def load_refused_or_fine(data: bytes) -> bool:
    """Load `data`: it loads, or it is a CheckpointError that changed nothing. Refused?"""
    model = target()
    before = model.snapshot()
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "edited.safetensors"
        path.write_bytes(data)
        try:
            model.load(path)
        except fl.CheckpointError:
            assert_same(model.snapshot(), before)
            return True
    target.cache_clear()  # it loaded: the next edit gets a fresh target
    return False


REQUIRED = {"flowdl_version", "torch_version", "structural_hash", "model_type", "epoch",
            "extra", "model", "optimizer", "scheduler"}  # fmt: skip
TYPED = {("flowdl_version",): str, ("torch_version",): str, ("structural_hash",): str,
         ("model_type",): str, ("model", "tensors"): list, ("model", "objects"): dict,
         ("optimizer", "type"): str, ("scheduler", "type"): str,
         ("optimizer", "parameters"): list}  # fmt: skip


@settings(max_examples=120, deadline=None)
@given(st.data())
def test_any_edited_document_field_is_refused_or_harmless(data: st.DataObject) -> None:
    header, document, tensors = split(good_bytes())
    path = data.draw(st.sampled_from(paths(document)), label="path")
    delete = data.draw(st.booleans(), label="delete")
    new = data.draw(json_values(), label="new value")
    refused = load_refused_or_fine(join(header, edit(document, path, new, delete), tensors))
    if path[0] in REQUIRED and len(path) == 1 and delete:
        assert refused, f"removing {path} was not refused"
    wanted = TYPED.get(path)
    if wanted is not None and (delete or not isinstance(new, wanted)):
        assert refused, f"{path} = {new!r} was not refused"
    if path == ("epoch",) and not delete and not (new is None or type(new) is int):
        assert refused, f"epoch = {new!r} was not refused"


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_any_edited_header_entry_is_refused(data: st.DataObject) -> None:
    header, document, tensors = split(good_bytes())
    path = data.draw(st.sampled_from(paths(header)), label="path")
    delete = data.draw(st.booleans(), label="delete")
    new = data.draw(json_values(), label="new value")
    edited = edit(header, path, new, delete)
    if edited == header:
        return
    assert load_refused_or_fine(join(edited, document, tensors))


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"a":' * 50_000 + "1" + "}" * 50_000, "nested too deeply"),
        ("9" * 5000, "not valid JSON"),
        ('"a string"', "not a JSON object"),
        ("[]", "not a JSON object"),
    ],
)
def test_documents_that_are_not_objects(raw: str, match: str) -> None:
    header, document, tensors = split(good_bytes())
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "deep.safetensors"
        path.write_bytes(join(header, document, tensors, raw_document=raw))
        model = target()
        before = model.snapshot()
        with pytest.raises(fl.CheckpointError, match=match):
            model.load(path)
        assert_same(model.snapshot(), before)


@pytest.mark.parametrize("version", ["9" * 5000, "1.5", "", "-1", "0", " 2"])
def test_unreadable_format_versions(tmp_path: Path, version: str) -> None:
    header, document, tensors = split(good_bytes())
    path = tmp_path / "v.safetensors"
    path.write_bytes(join(header, document, tensors, version=version))
    with pytest.raises(fl.CheckpointError, match="format version"):
        fl.load_checkpoint(path, make())


def test_a_required_field_missing_changes_nothing(tmp_path: Path) -> None:
    header, document, tensors = split(good_bytes())
    for field in sorted(REQUIRED):
        path = tmp_path / f"{field}.safetensors"
        path.write_bytes(join(header, {k: v for k, v in document.items() if k != field}, tensors))
        model = target()
        before = model.snapshot()
        with pytest.raises(fl.CheckpointError, match=f"the field '{field}' is missing"):
            model.load(path)
        assert_same(model.snapshot(), before)


def test_the_held_version_1_file_still_loads() -> None:
    """A file written by flowdl's format version 1 (model/..., SHA-256) loads as it did."""
    torch.manual_seed(0)
    model = (
        fl.Flow(torch.nn.Linear(3, 4)).through(torch.nn.BatchNorm1d(4))
        .through(torch.nn.Linear(4, 2)).build()
    )  # fmt: skip
    optimizer = torch.optim.Adam(model.parameters(), lr=0.5)
    scheduler = lr_scheduler.StepLR(optimizer, 2, 0.5)
    report = fl.load_checkpoint(HELD, model, optimizer, scheduler)
    assert report.complete
    assert report.epoch == 3
    assert report.extra == {"epoch": 3, "note": "held version-1 file", "best": (0.5, float("inf"))}
    stored = safetensors.torch.load_file(HELD)
    for key, value in model.state_dict().items():
        assert torch.equal(value, stored["model/" + key]), key
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.005)
    assert scheduler.last_epoch == 3
    state = optimizer.state_dict()["state"][0]
    assert torch.equal(state["exp_avg"], stored["optimizer/state/0/exp_avg"])
    assert fl.checkpoint_info(HELD).format_version == 1
    assert container.read_header(HELD).metadata["flowdl.format_version"] == "1"
