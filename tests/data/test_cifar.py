"""fl.data.cifar10: binary batches, gzipped or raw, with their channel layout and checks."""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile
from pathlib import Path

import pytest
import torch

import flowdl as fl


def record(label: int, image: torch.Tensor) -> bytes:
    """A CIFAR-10 record: the label byte, then the R, G and B planes, row by row."""
    return bytes([label]) + bytes(image.flatten().tolist())


def images(n: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 32, 32), generator=generator, dtype=torch.uint8)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_records_become_channel_first_images(tmp_path: Path) -> None:
    image = torch.zeros(3, 32, 32, dtype=torch.uint8)
    image[0, 0, 1] = 255  # red, row 0, column 1
    image[1, 2, 0] = 51  # green, row 2, column 0
    image[2, 31, 31] = 102  # blue, last pixel
    data = fl.data.cifar10(write(tmp_path / "b.bin", record(6, image)))
    picture, label = data[0]
    assert picture.shape == (3, 32, 32)
    assert picture.dtype == torch.float32
    assert label.item() == 6
    assert data.classes[6] == "frog"
    assert picture[0, 0, 1].item() == 1.0
    assert picture[1, 2, 0].item() == pytest.approx(0.2)
    assert picture[2, 31, 31].item() == pytest.approx(0.4)
    assert picture.sum().item() == pytest.approx(1.6)


def test_several_batches_concatenate_in_order_gzipped_or_not(tmp_path: Path) -> None:
    first, second = images(3, 0), images(2, 1)
    a = write(tmp_path / "data_batch_1.bin",
              b"".join(record(i, first[i]) for i in range(3)))  # fmt: skip
    b = write(tmp_path / "data_batch_2.bin.gz",
              gzip.compress(b"".join(record(9 - i, second[i]) for i in range(2))))  # fmt: skip
    data = fl.data.cifar10(a, b)
    assert len(data) == 5
    assert data.labels.tolist() == [0, 1, 2, 9, 8]
    assert torch.equal(data.images, torch.cat([first, second]))
    assert torch.equal(data[4][0], second[1].to(torch.float32) / 255)


@pytest.mark.parametrize(
    ("size", "match"),
    [
        (3073 * 2 - 5, "6141 bytes = 1 record and 3068 bytes"),
        (3074 * 3, "like CIFAR-100's binary files"),
        (0, "0 bytes"),
    ],
)
def test_sizes_must_be_whole_records(tmp_path: Path, size: int, match: str) -> None:
    with pytest.raises(fl.data.DatasetError, match=match) as caught:
        fl.data.cifar10(write(tmp_path / "x.bin", bytes(size)))
    assert "a multiple of 3073 bytes" in str(caught.value)


def test_labels_must_be_0_to_9(tmp_path: Path) -> None:
    data = record(1, images(1, 0)[0]) + record(10, images(1, 1)[0])
    with pytest.raises(fl.data.DatasetError, match="label 10 in record 1"):
        fl.data.cifar10(write(tmp_path / "x.bin", data))


def test_an_archive_or_the_pickled_version_is_named(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo("cifar-10-batches-bin/data_batch_1.bin")
        payload = record(0, images(1, 0)[0])
        info.size = len(payload)
        archive.addfile(info, io.BytesIO(payload))
    tar_gz = write(tmp_path / "cifar-10-binary.tar.gz", gzip.compress(buffer.getvalue()))
    with pytest.raises(fl.data.DatasetError, match="this is a tar archive") as caught:
        fl.data.cifar10(tar_gz)
    assert "tar xzf" in caught.value.fix  # type: ignore[operator]
    pickled = write(tmp_path / "data_batch_1", pickle.dumps({"data": [1]}, protocol=2))
    with pytest.raises(fl.data.DatasetError, match="Python pickle") as caught:
        fl.data.cifar10(pickled)
    assert "never unpickles" in caught.value.fix  # type: ignore[operator]


def test_no_paths(tmp_path: Path) -> None:
    with pytest.raises(fl.data.DatasetError, match="at least one batch file"):
        fl.data.cifar10()
