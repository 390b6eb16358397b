"""`fl.data.mnist`: the MNIST IDX files (``*-images-idx3-ubyte``, ``*-labels-idx1-ubyte``)."""

from __future__ import annotations

import os

import torch

from flowdl.data._errors import DatasetError
from flowdl.data._files import describe_start, read_bytes
from flowdl.data._images import ImageDataset

IMAGES_MAGIC = 2051
"""IDX magic of an image file: unsigned bytes, 3 dimensions (``0x00000803``)."""
LABELS_MAGIC = 2049
"""IDX magic of a label file: unsigned bytes, 1 dimension (``0x00000801``)."""
CLASSES = tuple(str(digit) for digit in range(10))


def mnist(images_path: str | os.PathLike[str], labels_path: str | os.PathLike[str]) -> ImageDataset:
    """The MNIST digits from the standard IDX files, gzipped or not.

    The files are recognised by their content (a gzip stream is decompressed
    whatever the file is called), and their headers are checked: magic numbers
    2051 and 2049, the image size against the file size, the same count in both
    files, labels 0 to 9.

    Args:
        images_path: e.g. ``t10k-images-idx3-ubyte.gz`` (magic 2051).
        labels_path: e.g. ``t10k-labels-idx1-ubyte.gz`` (magic 2049).

    Returns:
        an `ImageDataset` of ``[1, 28, 28]`` float32 images in ``[0, 1]`` and int64
        labels; ``classes`` are ``"0"`` to ``"9"``.

    Raises:
        DatasetError: a file is missing, is not an IDX file of the right kind (the
            two paths swapped, say), is truncated or too long, or the counts differ.

    Example:
        >>> import gzip, tempfile
        >>> from pathlib import Path
        >>> import flowdl as fl
        >>> folder = Path(tempfile.mkdtemp())
        >>> def u32(*values): return b"".join(v.to_bytes(4, "big") for v in values)
        >>> images = gzip.compress(u32(2051, 2, 28, 28) + bytes(2 * 28 * 28))
        >>> _ = (folder / "images.gz").write_bytes(images)
        >>> _ = (folder / "labels").write_bytes(u32(2049, 2) + bytes([7, 1]))
        >>> digits = fl.data.mnist(folder / "images.gz", folder / "labels")
        >>> len(digits), digits[0][0].shape, digits.labels.tolist()
        (2, torch.Size([1, 28, 28]), [7, 1])
    """
    images = _images(str(images_path))
    labels = _labels(str(labels_path))
    if images.shape[0] != labels.shape[0]:
        raise DatasetError(
            "the MNIST image and label files hold different numbers of items",
            path=f"{images_path} and {labels_path}",
            expected="one label per image",
            received=f"{images.shape[0]} images and {labels.shape[0]} labels",
            fix="pass files of the same set (both train or both t10k)",
        )
    return ImageDataset(images.unsqueeze(1), labels, CLASSES)


def _images(path: str) -> torch.Tensor:
    data = read_bytes(path, "MNIST images")
    _check_magic(data, path, IMAGES_MAGIC, "images", header=16)
    count, rows, cols = (int.from_bytes(data[i : i + 4], "big") for i in (4, 8, 12))
    _check_size(data, path, 16, count * rows * cols, f"{count} images of {rows}x{cols} pixels")
    pixels = torch.frombuffer(bytearray(data[16:]), dtype=torch.uint8)
    return pixels.reshape(count, rows, cols)


def _labels(path: str) -> torch.Tensor:
    data = read_bytes(path, "MNIST labels")
    _check_magic(data, path, LABELS_MAGIC, "labels", header=8)
    count = int.from_bytes(data[4:8], "big")
    _check_size(data, path, 8, count, f"{count} labels")
    labels = torch.frombuffer(bytearray(data[8:]), dtype=torch.uint8).to(torch.int64)
    if count and int(labels.max()) > 9:
        index = int(torch.nonzero(labels > 9)[0])
        raise DatasetError(
            "an MNIST label is not a digit",
            path=path,
            expected="labels 0 to 9",
            received=f"label {int(labels[index])} at index {index}",
            fix="pass the MNIST label file; other IDX label sets (EMNIST) have other classes",
        )
    return labels


def _check_magic(data: bytes, path: str, magic: int, kind: str, header: int) -> None:
    found = int.from_bytes(data[:4], "big")
    if found == magic or len(data) < 4:
        if len(data) >= header:
            return
        raise DatasetError(
            f"the MNIST {kind} file is too short for its header",
            path=path,
            expected=f"an IDX header of {header} bytes",
            received=f"{len(data)} bytes",
            fix="the file is truncated; download it again",
        )
    other = {IMAGES_MAGIC: "an IDX image file", LABELS_MAGIC: "an IDX label file"}.get(found)
    swap = " (the image and label paths are swapped?)" if other else ""
    raise DatasetError(
        f"this is not an MNIST {kind} file{swap}",
        path=path,
        expected=f"IDX magic number {magic} (0x{magic:08x})",
        received=f"magic {found} (0x{found:08x})"
        + (f": {other}" if other else "")
        + ("" if other else f", {describe_start(data)}"),
        fix="pass mnist(images_path, labels_path) the *-images-idx3-ubyte and "
        "*-labels-idx1-ubyte files, in that order",
    )


def _check_size(data: bytes, path: str, header: int, payload: int, what: str) -> None:
    if len(data) == header + payload:
        return
    short = len(data) < header + payload
    raise DatasetError(
        f"the MNIST file is {'truncated' if short else 'longer than its header says'}",
        path=path,
        expected=f"{header + payload} bytes: a {header}-byte header and {what}",
        received=f"{len(data)} bytes",
        fix="download the file again"
        if short
        else "the header's count is wrong: the file was edited or is of another format",
    )
