"""`fl.data.mnist`: the MNIST IDX files (``*-images-idx3-ubyte``, ``*-labels-idx1-ubyte``)."""

from __future__ import annotations

import os

import torch

from flowdl.data._errors import DatasetError
from flowdl.data._files import DataStream, describe_start, open_stream
from flowdl.data._images import ImageDataset

IMAGES_MAGIC = 2051
"""IDX magic of an image file: unsigned bytes, 3 dimensions (``0x00000803``)."""
LABELS_MAGIC = 2049
"""IDX magic of a label file: unsigned bytes, 1 dimension (``0x00000801``)."""
CLASSES = tuple(str(digit) for digit in range(10))


def mnist(images_path: str | os.PathLike[str], labels_path: str | os.PathLike[str]) -> ImageDataset:
    """The MNIST digits from the standard IDX files, gzipped or not.

    The files are recognised by their content (a gzip stream is decompressed
    whatever the file is called) and read as streams: each header is read and
    checked first (magic numbers 2051 and 2049, a count above 0, images of at
    least 1x1 pixels), then exactly the bytes it declares, and the stream must end there; a
    file that does not is refused without reading the rest. Then the counts of the
    two files must agree, and the labels be 0 to 9. Only regular files are read.

    Args:
        images_path: e.g. ``t10k-images-idx3-ubyte.gz`` (magic 2051).
        labels_path: e.g. ``t10k-labels-idx1-ubyte.gz`` (magic 2049).

    Images of the size the header declares are read as they are: MNIST's (and
    Fashion-MNIST's, EMNIST's, KMNIST's) are 28x28, and a file of another size, such
    as a 32x32 padded variant, gives images of that size. Nothing is resized.

    Returns:
        an `ImageDataset` of ``[1, 28, 28]`` float32 images in ``[0, 1]`` and int64
        labels; ``classes`` are ``"0"`` to ``"9"``.

    Raises:
        DatasetError: a file is missing, not a regular file (a named pipe), empty,
            not an IDX file of the right kind (the two paths swapped, say), of no
            images or of 0x0 images, truncated or too long, or the counts differ.

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
    with open_stream(path, "MNIST images") as stream:
        header = _header(stream, IMAGES_MAGIC, "images", 16)
        count, rows, cols = (int.from_bytes(header[i : i + 4], "big") for i in (4, 8, 12))
        if rows == 0 or cols == 0:
            raise DatasetError(
                f"the MNIST images are {rows}x{cols} pixels: they hold no pixels",
                path=path,
                expected="an IDX header declaring images of at least 1x1 pixels (MNIST: 28x28)",
                received=f"{count} images of {rows}x{cols} pixels",
                fix="pass an MNIST-format image file; this one is damaged or of another format",
            )
        size = f" of {rows}x{cols} pixels"
        pixels = _payload(stream, 16, count, count * rows * cols, "images" + size)
    return torch.frombuffer(pixels, dtype=torch.uint8).reshape(count, rows, cols)


def _labels(path: str) -> torch.Tensor:
    with open_stream(path, "MNIST labels") as stream:
        header = _header(stream, LABELS_MAGIC, "labels", 8)
        count = int.from_bytes(header[4:8], "big")
        values = _payload(stream, 8, count, count, "labels")
    labels = torch.frombuffer(values, dtype=torch.uint8).to(torch.int64)
    if int(labels.max()) > 9:
        index = int(torch.nonzero(labels > 9)[0])
        raise DatasetError(
            "an MNIST label is not a digit",
            path=path,
            expected="labels 0 to 9",
            received=f"label {int(labels[index])} at index {index}",
            fix="pass the MNIST label file; other IDX label sets (EMNIST) have other classes",
        )
    return labels


def _header(stream: DataStream, magic: int, kind: str, size: int) -> bytearray:
    """The file's IDX header of `size` bytes, read from the stream and checked."""
    header = stream.read(size)
    found = int.from_bytes(header[:4], "big")
    if found == magic or len(header) < 4:
        if len(header) == size:
            return header
        raise DatasetError(
            f"the MNIST {kind} file is too short for its header",
            path=stream.path,
            expected=f"an IDX header of {size} bytes",
            received="an empty file" if not header else f"{len(header)} bytes",
            fix="the file is truncated; download it again",
        )
    other = {IMAGES_MAGIC: "an IDX image file", LABELS_MAGIC: "an IDX label file"}.get(found)
    swap = " (the image and label paths are swapped?)" if other else ""
    start = "" if other else f", {describe_start(stream.fill(header, 262))}"
    raise DatasetError(
        f"this is not an MNIST {kind} file{swap}",
        path=stream.path,
        expected=f"IDX magic number {magic} (0x{magic:08x})",
        received=f"magic {found} (0x{found:08x})" + (f": {other}" if other else start),
        fix="pass mnist(images_path, labels_path) the *-images-idx3-ubyte and "
        "*-labels-idx1-ubyte files, in that order",
    )


def _payload(stream: DataStream, header: int, count: int, size: int, kind: str) -> bytearray:
    """Exactly the `size` bytes the header declares; the stream must end there."""
    what = f"{count} {kind}"
    kind = kind.split()[0]
    if count == 0:
        raise DatasetError(
            f"the MNIST {kind} file holds no {kind}",
            path=stream.path,
            expected=f"an IDX header with a count of {kind} above 0",
            received="a count of 0",
            fix="pass a file of the MNIST set (train: 60,000, t10k: 10,000)",
        )
    data = stream.read(size)
    if len(data) == size and stream.at_end():
        return data
    short = len(data) < size
    gzip = " once decompressed" if stream.compressed else ""
    raise DatasetError(
        f"the MNIST file is {'truncated' if short else 'longer than its header says'}",
        path=stream.path,
        expected=f"{header + size} bytes: {_an(header)} {header}-byte header and {what}",
        received=f"{header + len(data)} bytes{gzip}"
        if short
        else f"more than {header + size} bytes{gzip} (the rest was not read)",
        fix="download the file again"
        if short
        else "the header's count is wrong: the file was edited or is of another format",
    )


def _an(number: int) -> str:
    """The article before a number said aloud ("an 8-byte", "a 16-byte")."""
    return "an" if str(number).startswith(("8", "11", "18")) else "a"
