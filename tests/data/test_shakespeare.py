"""fl.data.shakespeare and CharacterDataset: windows, vocabulary, split; the real text."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

import flowdl as fl
from flowdl.data import CharacterDataset

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n"


def test_windows_do_not_overlap_and_targets_shift_by_one() -> None:
    data = CharacterDataset(TEXT, seq_len=7)
    assert len(data) == (len(TEXT) - 1) // 7
    for i in range(len(data)):
        x, y = data[i]
        assert data.decode(x) == TEXT[7 * i : 7 * i + 7]
        assert data.decode(y) == TEXT[7 * i + 1 : 7 * i + 8]
        assert x.dtype == y.dtype == torch.int64
    assert data.decode(data[-1][0]) == data.decode(data[len(data) - 1][0])
    with pytest.raises(IndexError):
        data[len(data)]


def test_the_last_window_may_end_on_the_last_character() -> None:
    data = CharacterDataset("abcde", seq_len=2)  # windows ab->bc, cd->de
    assert len(data) == 2
    assert data.decode(data[1][1]) == "de"
    assert len(CharacterDataset("abcd", seq_len=2)) == 1  # "cd" has no target for d


def test_the_vocabulary_is_the_sorted_distinct_characters() -> None:
    data = CharacterDataset(TEXT, seq_len=4)
    assert data.vocabulary == "".join(sorted(set(TEXT)))
    assert data.encode("Fir").tolist() == [data.vocabulary.index(c) for c in "Fir"]
    assert data.decode(data.encode(TEXT)) == TEXT
    assert data.decode([0, 1]) == data.vocabulary[:2]


def test_unknown_characters_and_ids_are_clear_errors() -> None:
    data = CharacterDataset(TEXT, seq_len=4)
    with pytest.raises(ValueError, match="character 'Q' \\(at position 2\\) is not in the vocab"):
        data.encode("weQ")
    with pytest.raises(ValueError, match="id 99 is outside the vocabulary"):
        data.decode(torch.tensor([0, 99]))


def test_split_shares_the_vocabulary_and_no_window_crosses_it() -> None:
    data = CharacterDataset(TEXT, seq_len=5)
    train, validation = data.split(0.75)
    cut = int(len(TEXT) * 0.75)
    assert train.vocabulary == validation.vocabulary == data.vocabulary
    assert train.decode(train.ids) == TEXT[:cut]
    assert validation.decode(validation.ids) == TEXT[cut:]
    assert len(train) == (cut - 1) // 5
    assert validation.decode(validation[0][0]) == TEXT[cut : cut + 5]
    with pytest.raises(ValueError, match="second part of the split has"):
        data.split(0.99)
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        data.split(1.0)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="seq_len must be an integer of at least 1"):
        CharacterDataset(TEXT, seq_len=0)
    with pytest.raises(ValueError, match="fewer than one window"):
        CharacterDataset("abc", seq_len=3)
    with pytest.raises(ValueError, match="has a character twice"):
        CharacterDataset("abab", seq_len=1, vocabulary="aab")


def test_the_file_gzipped_or_not(tmp_path: Path) -> None:
    (tmp_path / "input.txt").write_text(TEXT)
    (tmp_path / "input.txt.gz").write_bytes(gzip.compress(TEXT.encode()))
    plain = fl.data.shakespeare(tmp_path / "input.txt", seq_len=6)
    packed = fl.data.shakespeare(tmp_path / "input.txt.gz", seq_len=6)
    assert torch.equal(plain.ids, packed.ids)
    x, y = next(iter(DataLoader(plain, batch_size=3)))
    assert x.shape == y.shape == (3, 6)
    assert torch.equal(x[:, 1:], y[:, :-1])


def test_file_errors(tmp_path: Path) -> None:
    (tmp_path / "binary").write_bytes(b"abc\xff\xfe")
    with pytest.raises(fl.data.DatasetError, match="byte 0xff at offset 3"):
        fl.data.shakespeare(tmp_path / "binary", seq_len=2)
    (tmp_path / "short.txt").write_text("ab")
    with pytest.raises(fl.data.DatasetError, match="fewer than one window") as caught:
        fl.data.shakespeare(tmp_path / "short.txt", seq_len=4)
    assert str(tmp_path / "short.txt") in str(caught.value)
    with pytest.raises(fl.data.DatasetError, match="there is no text file"):
        fl.data.shakespeare(tmp_path / "missing.txt", seq_len=4)


def test_tiny_shakespeare(shared_data: Path) -> None:
    path = shared_data / "tinyshakespeare" / "input.txt"
    data = fl.data.shakespeare(path, seq_len=100)
    text = path.read_text()
    assert data.ids.numel() == len(text) == 1_115_394
    assert len(data.vocabulary) == 65
    assert len(data) == (1_115_394 - 1) // 100
    assert data.decode(data[0][0]) == text[:100]
    assert data.decode(data[0][0]).startswith("First Citizen:")
    train, validation = data.split(0.9)
    assert train.ids.numel() + validation.ids.numel() == len(text)
    assert len(train) + len(validation) <= len(data)
    assert validation.vocabulary == data.vocabulary
