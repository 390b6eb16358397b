"""`CharacterDataset`: text as windows of character ids, for next-character prediction."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor
from torch.utils.data import Dataset


class CharacterDataset(Dataset[tuple[Tensor, Tensor]]):
    """Non-overlapping windows of a text: ``dataset[i]`` is ``(input, target)``.

    The text is encoded with a character vocabulary (its sorted distinct
    characters, unless one is given); window ``i`` is ``ids[i*L : i*L + L]`` with
    ``L = seq_len``, and its target the same window shifted by one character. A text
    of ``n`` characters gives ``(n - 1) // seq_len`` windows; the last characters
    that do not fill a window are not used.

    Args:
        text: the text.
        seq_len: characters per window, at least 1.
        vocabulary: the characters, in id order; every character of `text` must be
            in it. ``None``: the sorted distinct characters of `text`.

    Attributes:
        vocabulary: the characters, in id order (a string).
        seq_len: characters per window.
        ids: the whole text as int64 ids.

    Raises:
        ValueError: `seq_len` is below 1, the text is shorter than one window plus
            one character, or a character is not in the vocabulary.

    Example:
        >>> from flowdl.data import CharacterDataset
        >>> data = CharacterDataset("hello world", seq_len=4)
        >>> data.vocabulary, len(data)
        (' dehlorw', 2)
        >>> x, y = data[0]
        >>> data.decode(x), data.decode(y)
        ('hell', 'ello')
        >>> train, validation = data.split(0.5)
        >>> validation.vocabulary == train.vocabulary
        True
    """

    def __init__(self, text: str, seq_len: int, vocabulary: str | None = None) -> None:
        if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
            raise ValueError(f"seq_len must be an integer of at least 1, received {seq_len!r}")
        if len(text) < seq_len + 1:
            raise ValueError(
                f"the text has {len(text)} characters, fewer than one window of seq_len="
                f"{seq_len} plus the one character its target needs; use a shorter seq_len"
            )
        self.vocabulary = "".join(sorted(set(text))) if vocabulary is None else vocabulary
        self._index = {c: i for i, c in enumerate(self.vocabulary)}
        if len(self._index) != len(self.vocabulary):
            raise ValueError("the vocabulary has a character twice")
        self.seq_len = seq_len
        self._codes = _lookup(self.vocabulary)
        self.ids = self.encode(text)

    def __len__(self) -> int:
        return (int(self.ids.numel()) - 1) // self.seq_len

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        count = len(self)
        if not -count <= index < count:
            raise IndexError(f"window {index} of a dataset of {count} windows")
        start = (index % count) * self.seq_len
        return (
            self.ids[start : start + self.seq_len],
            self.ids[start + 1 : start + self.seq_len + 1],
        )

    def encode(self, text: str) -> Tensor:
        """The ids of the characters of `text`, an int64 tensor.

        Args:
            text: characters of the vocabulary.

        Returns:
            ``[len(text)]`` int64 ids.

        Raises:
            ValueError: a character is not in the vocabulary (the message says which
                and where).

        Example:
            >>> import tempfile
            >>> from pathlib import Path
            >>> import flowdl as fl
            >>> path = Path(tempfile.mkdtemp()) / "input.txt"
            >>> _ = path.write_text("hello world")
            >>> data = fl.data.shakespeare(path, seq_len=4)
            >>> ids = data.encode("hold")
            >>> ids.dtype, data.decode(ids)
            (torch.int64, 'hold')
        """
        if not text:
            return torch.empty(0, dtype=torch.int64)
        if text.isascii():  # one byte a character; otherwise four (UTF-32 code points)
            codes = torch.frombuffer(bytearray(text.encode("ascii")), dtype=torch.uint8)
        else:
            data = bytearray(text.encode("utf-32-le", errors="surrogatepass"))
            codes = torch.frombuffer(data, dtype=torch.int32)
        keys, order = self._codes
        position = torch.searchsorted(keys, codes.to(torch.int64)).clamp_(max=len(keys) - 1)
        known = keys[position] == codes
        if not bool(known.all()):
            at = int(torch.nonzero(~known)[0])
            raise ValueError(
                f"character {text[at]!r} (at position {at}) is not in the "
                f"vocabulary of {len(self.vocabulary)} characters"
            )
        return order[position]

    def decode(self, ids: Tensor | Iterable[int]) -> str:
        """The text of a sequence of ids (a tensor of any shape is read in order).

        Args:
            ids: a tensor or sequence of ids.

        Returns:
            the text.

        Raises:
            ValueError: an id is outside the vocabulary.
        """
        values = ids.reshape(-1).tolist() if isinstance(ids, Tensor) else list(ids)
        size = len(self.vocabulary)
        bad = [i for i in values if not 0 <= i < size]
        if bad:
            raise ValueError(f"id {bad[0]} is outside the vocabulary (ids 0 to {size - 1})")
        return "".join(self.vocabulary[i] for i in values)

    def split(self, fraction: float = 0.9) -> tuple[CharacterDataset, CharacterDataset]:
        """Split the text in two at `fraction` of its length: training and validation.

        Both parts share this dataset's vocabulary and window length, and no window
        crosses the split, so no validation character is seen in training. (A random
        split of the windows would put neighbouring text on both sides.)

        Args:
            fraction: the share of the characters that goes to the first part,
                strictly between 0 and 1.

        Returns:
            ``(first, second)``, two `CharacterDataset`.

        Raises:
            ValueError: `fraction` is not strictly between 0 and 1, or a part is
                shorter than one window.
        """
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"fraction must be strictly between 0 and 1, received {fraction!r}")
        cut = int(self.ids.numel() * fraction)
        return self._part(self.ids[:cut], "first"), self._part(self.ids[cut:], "second")

    def _part(self, ids: Tensor, which: str) -> CharacterDataset:
        if ids.numel() < self.seq_len + 1:
            raise ValueError(
                f"the {which} part of the split has {ids.numel()} characters, fewer than one "
                f"window of seq_len={self.seq_len} plus one; move the split or shorten seq_len"
            )
        part = CharacterDataset.__new__(CharacterDataset)
        part.vocabulary, part._index, part._codes, part.seq_len, part.ids = (
            self.vocabulary, self._index, self._codes, self.seq_len, ids,
        )  # fmt: skip
        return part

    def __repr__(self) -> str:
        return (
            f"CharacterDataset({len(self)} windows of {self.seq_len}, "
            f"{len(self.vocabulary)} characters)"
        )


def _lookup(vocabulary: str) -> tuple[Tensor, Tensor]:
    """The vocabulary's code points, sorted, and the id of each: `encode`'s lookup table."""
    if not vocabulary:
        return torch.full((1,), -1, dtype=torch.int64), torch.zeros(1, dtype=torch.int64)
    codes = torch.tensor([ord(c) for c in vocabulary], dtype=torch.int64)
    keys, order = torch.sort(codes)
    return keys, order
