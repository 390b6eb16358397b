"""`fl.data.cifar10`: the CIFAR-10 binary batches (``data_batch_1.bin`` ... ``test_batch.bin``)."""

from __future__ import annotations

import os

import torch

from flowdl._describe import plural
from flowdl.data._errors import DatasetError
from flowdl.data._files import describe_start, open_stream
from flowdl.data._images import ImageDataset

RECORD = 1 + 3 * 32 * 32
"""Bytes per image: a label byte, then 1024 red, 1024 green and 1024 blue bytes."""
MAX_RECORDS = 60_000
"""The most records one file may hold (all of CIFAR-10): a longer stream is refused
after reading that many, so a small gzip file cannot decompress without end."""
_FOREIGN = ("a tar archive", "a zip archive", "a Python pickle")
CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip


def cifar10(*batch_paths: str | os.PathLike[str]) -> ImageDataset:
    """CIFAR-10 images from the binary batch files, gzipped or not, in the order given.

    Each file is a sequence of 3073-byte records (a label 0-9, then the red, green
    and blue planes of a 32x32 image, row by row); the standard files hold 10,000
    records each, and a file may hold at most 60,000 (all of CIFAR-10: a longer
    stream is refused after reading that much). The size of each file and every
    label are checked. Only regular files are read.

    Args:
        *batch_paths: one or more of ``data_batch_1.bin`` ... ``data_batch_5.bin``,
            ``test_batch.bin`` (from ``cifar-10-binary.tar.gz``, extracted).

    Returns:
        an `ImageDataset` of ``[3, 32, 32]`` float32 images in ``[0, 1]`` and int64
        labels; ``classes`` are CIFAR-10's names (``"airplane"`` ... ``"truck"``).

    Raises:
        DatasetError: no path was given; a file is missing, not a regular file (a
            named pipe), empty, an archive, the Python (pickled) version, not a whole
            number of records, longer than 60,000 records, or has a label outside 0-9.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> import flowdl as fl
        >>> path = Path(tempfile.mkdtemp()) / "data_batch_1.bin"
        >>> _ = path.write_bytes(bytes([3]) + bytes(3072) + bytes([9]) + bytes([255]) * 3072)
        >>> images = fl.data.cifar10(path)
        >>> images[1][0].shape, images.labels.tolist(), images.classes[3]
        (torch.Size([3, 32, 32]), [3, 9], 'cat')
    """
    if not batch_paths:
        raise DatasetError(
            "cifar10() needs at least one batch file",
            expected="cifar10('data_batch_1.bin', ...)",
            received="no paths",
            fix="pass the paths of the binary batches",
        )
    parts = [_batch(str(path)) for path in batch_paths]
    records = torch.cat(parts) if len(parts) > 1 else parts[0]
    labels = records[:, 0].to(torch.int64)
    images = records[:, 1:].reshape(-1, 3, 32, 32)
    return ImageDataset(images, labels, CLASSES)


def _batch(path: str) -> torch.Tensor:
    with open_stream(path, "CIFAR-10 batch") as stream:
        data = stream.read(RECORD)
        start = describe_start(data)
        if start not in _FOREIGN and (not data or data[0] <= 9):  # else refused below
            stream.fill(data, MAX_RECORDS * RECORD + 1)
    if len(data) > MAX_RECORDS * RECORD:
        raise DatasetError(
            f"the file holds more than {MAX_RECORDS:,} CIFAR-10 records"
            + (" once decompressed" if stream.compressed else ""),
            path=path,
            expected=f"at most {MAX_RECORDS:,} records of 3073 bytes (all of CIFAR-10); "
            "the standard batches hold 10,000",
            received=f"more than {MAX_RECORDS * RECORD:,} bytes (the rest was not read)",
            fix="pass the data_batch_*.bin and test_batch.bin files, one path each",
        )
    if start in _FOREIGN:
        fix = (
            "flowdl reads the binary version (cifar-10-binary.tar.gz) and never unpickles"
            if start == "a Python pickle"
            else "extract it (tar xzf cifar-10-binary.tar.gz) and pass the data_batch_*.bin files"
        )
        raise DatasetError(
            f"this is {start}, not a CIFAR-10 binary batch",
            path=path,
            expected="3073-byte records: a label byte and 3072 pixel bytes",
            received=start,
            fix=fix,
        )
    if not data or len(data) % RECORD:  # an empty file too
        hint = (
            "; it is a whole number of 3074-byte records, like CIFAR-100's binary files"
            if data and len(data) % (RECORD + 1) == 0
            else ""
        )
        raise DatasetError(
            "this is not a whole number of CIFAR-10 records" + hint,
            path=path,
            expected="a multiple of 3073 bytes (10,000 records: 30,730,000 bytes)",
            received=f"{len(data)} bytes = {plural(len(data) // RECORD, 'record')} and "
            f"{plural(len(data) % RECORD, 'byte')}",
            fix="the file is truncated or of another format; download it again",
        )
    records = torch.frombuffer(data, dtype=torch.uint8).reshape(-1, RECORD)
    labels = records[:, 0]
    if int(labels.max()) > 9:
        index = int(torch.nonzero(labels > 9)[0])
        raise DatasetError(
            "a CIFAR-10 label is outside 0-9: the records are not aligned",
            path=path,
            expected="labels 0 to 9 at the start of every 3073-byte record",
            received=f"label {int(labels[index])} in record {index}",
            fix="pass CIFAR-10 binary batches (CIFAR-100 has 3074-byte records)",
        )
    return records
