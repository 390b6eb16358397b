"""Hostile dataset files: gzip bombs, lying headers, empty files, pipes and devices.

Every reader checks the header from the start of the stream and reads at most what
it declares, so a small file that decompresses to hundreds of megabytes is refused
with a bounded peak of memory (measured with `tracemalloc`, which sees every buffer
the readers allocate in Python), and a path that is not a regular file is refused
without being opened for reading.
"""

from __future__ import annotations

import gzip
import os
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import flowdl as fl
from flowdl.data import _cifar, _shakespeare

MiB = 2**20
BOMB = 256 * MiB
"""What each bomb decompresses to: far beyond the 16 MiB the readers may use here."""
PEAK = 16 * MiB


def u32(*values: int) -> bytes:
    return b"".join(v.to_bytes(4, "big") for v in values)


def bomb(path: Path, start: bytes, filler: int = 0) -> Path:
    """A gzip file of `start` followed by BOMB bytes of `filler`, about 260 KB on disk.

    A gzip file may hold several members, read one after the other: one member of a
    MiB of `filler`, compressed once and repeated, makes the file quick to build.
    """
    member = gzip.compress(bytes([filler]) * MiB, compresslevel=9)
    path.write_bytes(gzip.compress(start) + member * (BOMB // MiB))
    return path


def peak_of(read: Callable[[], Any]) -> tuple[int, BaseException]:
    """The peak of Python memory while `read()` runs, and the DatasetError it raised."""
    tracemalloc.start()
    try:
        read()
    except fl.data.DatasetError as error:
        raised: BaseException = error
    else:
        raise AssertionError("the reader accepted a hostile file")
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak, raised


def labels_file(path: Path, count: int = 2) -> Path:
    path.write_bytes(u32(2049, count) + bytes(count))
    return path


def test_a_bomb_with_a_wrong_magic_number_is_refused_after_its_header(tmp_path: Path) -> None:
    images = bomb(tmp_path / "images.gz", b"")
    labels = labels_file(tmp_path / "labels")
    peak, error = peak_of(lambda: fl.data.mnist(images, labels))
    assert "this is not an MNIST images file" in str(error)
    assert peak < PEAK


@pytest.mark.parametrize("kind", ["images", "labels"])
def test_a_stream_longer_than_its_header_says_is_refused_within_a_chunk(
    tmp_path: Path, kind: str
) -> None:
    if kind == "images":
        images = bomb(tmp_path / "images.gz", u32(2051, 2, 28, 28) + bytes(2 * 784))
        labels = labels_file(tmp_path / "labels")
    else:
        images = tmp_path / "images"
        images.write_bytes(u32(2051, 2, 28, 28) + bytes(2 * 784))
        labels = bomb(tmp_path / "labels.gz", u32(2049, 2) + bytes(2))
    peak, error = peak_of(lambda: fl.data.mnist(images, labels))
    assert "longer than its header says" in str(error)
    assert "the rest was not read" in str(error)
    assert peak < PEAK


def test_a_header_promising_billions_of_images_is_truncated_not_allocated(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.write_bytes(u32(2051, 2**32 - 1, 28, 28) + bytes(3 * 784))
    labels = labels_file(tmp_path / "labels")
    peak, error = peak_of(lambda: fl.data.mnist(images, labels))
    assert "the MNIST file is truncated" in str(error)
    assert "received: 2368 bytes" in str(error)
    assert peak < PEAK


def test_cifar_bombs_are_refused_with_bounded_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    misaligned = bomb(tmp_path / "ff.bin.gz", b"", filler=0xFF)  # label 255 at once
    peak, error = peak_of(lambda: fl.data.cifar10(misaligned))
    assert "label 255 in record 0" in str(error)
    assert peak < PEAK
    monkeypatch.setattr(_cifar, "MAX_RECORDS", 1000)  # 3 MB, not all of CIFAR-10's 184 MB
    zeros = bomb(tmp_path / "zeros.bin.gz", b"")  # label 0, black: valid records, too many
    peak, error = peak_of(lambda: fl.data.cifar10(zeros))
    assert "more than 1,000 CIFAR-10 records once decompressed" in str(error)
    assert peak < PEAK


def test_a_text_bomb_is_refused_at_the_size_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_shakespeare, "MAX_BYTES", 4 * MiB)
    text = bomb(tmp_path / "input.txt.gz", b"To be", filler=ord("a"))
    peak, error = peak_of(lambda: fl.data.shakespeare(text, seq_len=8))
    assert "larger than flowdl reads (4,194,304 bytes once decompressed)" in str(error)
    assert peak < PEAK


def test_the_text_limit_is_documented_and_large_enough_for_enwik8() -> None:
    assert _shakespeare.MAX_BYTES >= 100_000_000
    assert "128 MiB" in (fl.data.shakespeare.__doc__ or "")


@pytest.mark.parametrize("gzipped", [False, True])
def test_empty_files_are_dataset_errors(tmp_path: Path, gzipped: bool) -> None:
    empty = tmp_path / "empty"
    empty.write_bytes(gzip.compress(b"") if gzipped else b"")
    labels = labels_file(tmp_path / "labels")
    for read, message in [
        (lambda: fl.data.mnist(empty, labels), "too short for its header"),
        (lambda: fl.data.mnist(tmp_path / "images", empty), "too short for its header"),
        (lambda: fl.data.cifar10(empty), "0 bytes"),
        (lambda: fl.data.shakespeare(empty, seq_len=2), "0 characters"),
    ]:
        (tmp_path / "images").write_bytes(u32(2051, 2, 1, 1) + bytes(2))
        with pytest.raises(fl.data.DatasetError, match=message):
            read()


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (u32(2051, 2, 0, 0), "0x0 pixels: they hold no pixels"),
        (u32(2051, 2, 28, 0), "28x0 pixels"),
        (u32(2051, 0, 28, 28), "holds no images"),
    ],
    ids=["0x0", "28x0", "no images"],
)
def test_empty_images_are_dataset_errors(tmp_path: Path, header: bytes, message: str) -> None:
    images = tmp_path / "images"
    images.write_bytes(header)
    with pytest.raises(fl.data.DatasetError, match=message):
        fl.data.mnist(images, labels_file(tmp_path / "labels"))
    (tmp_path / "zero-labels").write_bytes(u32(2049, 0))
    (tmp_path / "two").write_bytes(u32(2051, 2, 1, 1) + bytes(2))
    with pytest.raises(fl.data.DatasetError, match="holds no labels"):
        fl.data.mnist(tmp_path / "two", tmp_path / "zero-labels")


def test_images_of_another_size_are_read_at_that_size(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.write_bytes(u32(2051, 2, 32, 30) + bytes(range(256)) * 7 + bytes(2 * 32 * 30 - 1792))
    data = fl.data.mnist(images, labels_file(tmp_path / "labels"))
    assert data.images.shape == (2, 1, 32, 30)
    assert data.images.flatten()[:256].tolist() == list(range(256))


READERS: list[tuple[str, Callable[[Path, Path], Any]]] = [
    ("mnist images", lambda path, other: fl.data.mnist(path, other)),
    ("mnist labels", lambda path, other: fl.data.mnist(other, path)),
    ("cifar10", lambda path, other: fl.data.cifar10(path)),
    ("shakespeare", lambda path, other: fl.data.shakespeare(path, seq_len=4)),
]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
@pytest.mark.timeout(60)  # a reader that opened the pipe would wait for a writer forever
@pytest.mark.parametrize(("name", "read"), READERS, ids=[name for name, _ in READERS])
def test_a_named_pipe_is_refused_not_waited_on(
    tmp_path: Path, name: str, read: Callable[[Path, Path], Any]
) -> None:
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    (tmp_path / "images").write_bytes(u32(2051, 2, 1, 1) + bytes(2))
    with pytest.raises(fl.data.DatasetError, match="not a regular file") as caught:
        read(pipe, tmp_path / "images")
    assert "a named pipe (FIFO)" in str(caught.value)


@pytest.mark.parametrize(("name", "read"), READERS, ids=[name for name, _ in READERS])
def test_folders_and_devices_are_refused(
    tmp_path: Path, name: str, read: Callable[[Path, Path], Any]
) -> None:
    (tmp_path / "images").write_bytes(u32(2051, 2, 1, 1) + bytes(2))
    with pytest.raises(fl.data.DatasetError, match="received: a folder"):
        read(tmp_path, tmp_path / "images")
    if Path("/dev/zero").exists():  # endless: reading it would never stop
        with pytest.raises(fl.data.DatasetError, match="a character device"):
            read(Path("/dev/zero"), tmp_path / "images")
