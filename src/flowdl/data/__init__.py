"""Datasets parsed from the standard files: MNIST, CIFAR-10, tiny Shakespeare.

Each function reads the files as they are distributed (gzip-compressed or not; the
content decides, not the name), checks them (magic numbers, sizes, counts, labels)
and returns a `torch.utils.data.Dataset` ready for `torch.utils.data.DataLoader`.
Nothing is downloaded, and nothing is unpickled.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> import flowdl as fl
    >>> path = Path(tempfile.mkdtemp()) / "input.txt"
    >>> _ = path.write_text("abcabcabc")
    >>> fl.data.shakespeare(path, seq_len=2)
    CharacterDataset(4 windows of 2, 3 characters)
"""

from flowdl.data._characters import CharacterDataset
from flowdl.data._cifar import cifar10
from flowdl.data._errors import DatasetError
from flowdl.data._images import ImageDataset
from flowdl.data._mnist import mnist
from flowdl.data._shakespeare import shakespeare

__all__ = ["CharacterDataset", "DatasetError", "ImageDataset", "cifar10", "mnist", "shakespeare"]
