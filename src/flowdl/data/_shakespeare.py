"""`fl.data.shakespeare`: a plain-text corpus (tiny Shakespeare) as character windows."""

from __future__ import annotations

import os

from flowdl.data._characters import CharacterDataset
from flowdl.data._errors import DatasetError
from flowdl.data._files import describe_start, read_bytes

MAX_BYTES = 128 * 2**20
"""The largest text read (enwik8's 100 MB fits): a longer stream, or a gzip file that
decompresses to more, is refused after reading this much. Its ids take 8 bytes a
character."""


def shakespeare(path: str | os.PathLike[str], seq_len: int) -> CharacterDataset:
    """Tiny Shakespeare (or any UTF-8 text file, gzipped or not) as character windows.

    The vocabulary is the sorted distinct characters of the file (65 for tiny
    Shakespeare); ``dataset[i]`` is window ``i`` of `seq_len` ids and its target,
    the same window shifted by one character (see `CharacterDataset`). For a
    validation set that shares the vocabulary, split the text:
    ``train, validation = fl.data.shakespeare(path, 128).split(0.9)``.

    The file must be a regular file of at most 128 MiB of text (once decompressed);
    a longer one is refused after reading that much.

    Args:
        path: the text file, e.g. ``tinyshakespeare/input.txt``.
        seq_len: characters per window, at least 1.

    Returns:
        a `CharacterDataset`.

    Raises:
        DatasetError: the file is missing, not a regular file (a named pipe), longer
            than 128 MiB, not UTF-8 text, or shorter than one window plus one
            character (an empty file); or `seq_len` is below 1.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> import flowdl as fl
        >>> path = Path(tempfile.mkdtemp()) / "input.txt"
        >>> _ = path.write_text("To be, or not to be: that is the question.\\n")
        >>> text = fl.data.shakespeare(path, seq_len=8)
        >>> len(text), len(text.vocabulary), text.decode(text[1][0])
        (5, 18, 'r not to')
    """
    where = str(path)
    data = read_bytes(path, "text", MAX_BYTES)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DatasetError(
            "the file is not UTF-8 text",
            path=where,
            expected="a plain-text file (UTF-8)",
            received=f"byte 0x{data[error.start]:02x} at offset {error.start}; "
            f"{describe_start(data)}",
            fix="pass the plain-text corpus (tinyshakespeare/input.txt)",
        ) from error
    try:
        return CharacterDataset(text, seq_len)
    except ValueError as error:
        raise DatasetError(
            str(error), path=where, fix="use a longer text or a shorter seq_len"
        ) from error
