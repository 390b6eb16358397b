"""fl.data.mnist: IDX files, gzipped or raw, checked; and the real MNIST test set."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

import flowdl as fl


def u32(*values: int) -> bytes:
    return b"".join(v.to_bytes(4, "big") for v in values)


def idx_images(pixels: torch.Tensor) -> bytes:
    count, rows, cols = pixels.shape
    return u32(2051, count, rows, cols) + bytes(pixels.flatten().tolist())


def idx_labels(labels: list[int]) -> bytes:
    return u32(2049, len(labels)) + bytes(labels)


@pytest.fixture
def pixels() -> torch.Tensor:
    return torch.randint(0, 256, (5, 4, 3), dtype=torch.uint8)


LABELS = [3, 0, 9, 3, 1]


def files(
    folder: Path, images: bytes, labels: bytes, *, gzip_images: bool, gzip_labels: bool
) -> tuple[Path, Path]:
    image_path, label_path = folder / "images", folder / "labels"
    image_path.write_bytes(gzip.compress(images) if gzip_images else images)
    label_path.write_bytes(gzip.compress(labels) if gzip_labels else labels)
    return image_path, label_path


@pytest.mark.parametrize("gzip_images", [True, False])
@pytest.mark.parametrize("gzip_labels", [True, False])
def test_parses_gzipped_and_raw_files(
    tmp_path: Path, pixels: torch.Tensor, gzip_images: bool, gzip_labels: bool
) -> None:
    paths = files(tmp_path, idx_images(pixels), idx_labels(LABELS),
                  gzip_images=gzip_images, gzip_labels=gzip_labels)  # fmt: skip
    data = fl.data.mnist(*paths)
    assert len(data) == 5
    assert data.labels.dtype == torch.int64
    assert data.labels.tolist() == LABELS
    image, label = data[2]
    assert image.shape == (1, 4, 3)
    assert image.dtype == torch.float32
    assert label.dtype == torch.int64
    assert label.item() == 9
    assert torch.equal(image[0], pixels[2].to(torch.float32) / 255)
    assert data.classes == tuple("0123456789")
    assert data.class_counts() == [1, 1, 0, 2, 0, 0, 0, 0, 0, 1]


def test_content_decides_not_the_name(tmp_path: Path, pixels: torch.Tensor) -> None:
    raw_named_gz = tmp_path / "t10k-images-idx3-ubyte.gz"
    raw_named_gz.write_bytes(idx_images(pixels))
    gz_named_raw = tmp_path / "t10k-labels-idx1-ubyte"
    gz_named_raw.write_bytes(gzip.compress(idx_labels(LABELS)))
    assert fl.data.mnist(raw_named_gz, gz_named_raw).labels.tolist() == LABELS


def test_pixel_scaling_is_exact(tmp_path: Path) -> None:
    pixels = torch.tensor([[[0, 1, 128, 255]]], dtype=torch.uint8)
    data = fl.data.mnist(*files(tmp_path, idx_images(pixels), idx_labels([0]),
                                gzip_images=False, gzip_labels=False))  # fmt: skip
    # float32 nearest to k / 255: what the float64 quotient rounds to
    want = torch.tensor([[[0.0, 1 / 255, 128 / 255, 1.0]]], dtype=torch.float64).float()
    assert torch.equal(data[0][0], want)


def test_a_data_loader_stacks_batches(tmp_path: Path, pixels: torch.Tensor) -> None:
    data = fl.data.mnist(*files(tmp_path, idx_images(pixels), idx_labels(LABELS),
                                gzip_images=True, gzip_labels=True))  # fmt: skip
    images, labels = next(iter(DataLoader(data, batch_size=4)))
    assert images.shape == (4, 1, 4, 3)
    assert labels.tolist() == LABELS[:4]
    assert torch.equal(images[:, 0], pixels[:4].to(torch.float32) / 255)


def test_batched_reads_agree_with_single_reads(tmp_path: Path, pixels: torch.Tensor) -> None:
    data = fl.data.mnist(*files(tmp_path, idx_images(pixels), idx_labels(LABELS),
                                gzip_images=False, gzip_labels=False))  # fmt: skip
    batch = data.__getitems__([4, 0, 2])
    for (image, label), index in zip(batch, [4, 0, 2], strict=True):
        single_image, single_label = data[index]
        assert torch.equal(image, single_image)
        assert torch.equal(label, single_label)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_swapped_paths_are_named(tmp_path: Path, pixels: torch.Tensor) -> None:
    images, labels = files(tmp_path, idx_images(pixels), idx_labels(LABELS),
                           gzip_images=True, gzip_labels=False)  # fmt: skip
    with pytest.raises(fl.data.DatasetError) as caught:
        fl.data.mnist(labels, images)
    message = str(caught.value)
    assert "not an MNIST images file (the image and label paths are swapped?)" in message
    assert "expected: IDX magic number 2051 (0x00000803)" in message
    assert "received: magic 2049 (0x00000801): an IDX label file" in message
    assert str(labels) in message


def test_a_bad_magic_number(tmp_path: Path, pixels: torch.Tensor) -> None:
    bad = write(tmp_path / "bad", b"\x00\x00\x08\x04" + idx_images(pixels)[4:])
    labels = write(tmp_path / "labels", idx_labels(LABELS))
    with pytest.raises(fl.data.DatasetError, match=r"magic 2052 \(0x00000804\)"):
        fl.data.mnist(bad, labels)
    text = write(tmp_path / "text", b"not an idx file at all")
    with pytest.raises(fl.data.DatasetError, match="first bytes 6e 6f 74 20"):
        fl.data.mnist(text, labels)


@pytest.mark.parametrize(
    ("kind", "match"),
    [
        ("truncated images", "truncated"),
        ("long images", "longer than its header says"),
        ("truncated labels", "truncated"),
        ("short header", "too short for its header"),
    ],
)
def test_sizes_are_checked_against_the_header(
    tmp_path: Path, pixels: torch.Tensor, kind: str, match: str
) -> None:
    images, labels = idx_images(pixels), idx_labels(LABELS)
    if kind == "truncated images":
        images = images[:-7]
    elif kind == "long images":
        images += b"\0"
    elif kind == "truncated labels":
        labels = labels[:-1]
    else:
        images = images[:10]
    paths = files(tmp_path, images, labels, gzip_images=True, gzip_labels=False)
    with pytest.raises(fl.data.DatasetError, match=match) as caught:
        fl.data.mnist(*paths)
    if kind == "truncated images":
        assert "expected: 76 bytes: a 16-byte header and 5 images of 4x3 pixels" in str(
            caught.value
        )
        assert "received: 69 bytes" in str(caught.value)


def test_counts_must_agree(tmp_path: Path, pixels: torch.Tensor) -> None:
    paths = files(tmp_path, idx_images(pixels), idx_labels(LABELS[:4]),
                  gzip_images=False, gzip_labels=False)  # fmt: skip
    with pytest.raises(fl.data.DatasetError, match="5 images and 4 labels"):
        fl.data.mnist(*paths)


def test_labels_must_be_digits(tmp_path: Path, pixels: torch.Tensor) -> None:
    paths = files(tmp_path, idx_images(pixels), idx_labels([1, 2, 12, 3, 4]),
                  gzip_images=False, gzip_labels=False)  # fmt: skip
    with pytest.raises(fl.data.DatasetError, match="label 12 at index 2"):
        fl.data.mnist(*paths)


def test_a_damaged_gzip_stream(tmp_path: Path, pixels: torch.Tensor) -> None:
    cut = write(tmp_path / "cut.gz", gzip.compress(idx_images(pixels))[:-12])
    labels = write(tmp_path / "labels", idx_labels(LABELS))
    with pytest.raises(fl.data.DatasetError, match="gzip stream is damaged or truncated"):
        fl.data.mnist(cut, labels)


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(fl.data.DatasetError, match="there is no MNIST images file at this path"):
        fl.data.mnist(tmp_path / "nope", tmp_path / "nope2")


def test_the_real_test_set(shared_data: Path) -> None:
    folder = shared_data / "mnist"
    data = fl.data.mnist(folder / "t10k-images-idx3-ubyte.gz", folder / "t10k-labels-idx1-ubyte.gz")
    assert len(data) == 10_000
    assert data.images.shape == (10_000, 1, 28, 28)
    # class counts from shared/data/README.md
    assert data.class_counts() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    image, label = data[0]
    assert label.item() == 7  # the first test digit is a seven
    assert image.min().item() == 0.0
    assert image.max().item() == 1.0
    assert 0.05 < image.mean().item() < 0.25  # ink covers a minority of the pixels
