"""`ImageDataset`: images and labels held as bytes, served as float32 in [0, 1]."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset


class ImageDataset(Dataset[tuple[Tensor, Tensor]]):
    """Images with integer labels: ``dataset[i]`` is ``(image, label)``.

    The images are kept as ``uint8`` (a quarter of the memory of float32) and
    converted when read: ``image`` is float32 of shape ``[C, H, W]`` with values
    ``pixel / 255`` in ``[0, 1]``; ``label`` is an int64 scalar tensor, so a
    `torch.utils.data.DataLoader` stacks a batch into ``[B, C, H, W]`` and ``[B]``.

    Args:
        images: ``uint8`` tensor ``[N, C, H, W]``.
        labels: integer tensor ``[N]``.
        classes: the name of each class, by label.

    Attributes:
        images: the ``uint8`` images, ``[N, C, H, W]``.
        labels: the int64 labels, ``[N]``.
        classes: the class names.

    Example:
        >>> import torch
        >>> from flowdl.data import ImageDataset
        >>> data = ImageDataset(torch.full((2, 1, 2, 2), 255, dtype=torch.uint8),
        ...                     torch.tensor([0, 1]), classes=("no", "yes"))
        >>> image, label = data[1]
        >>> image.shape, image.dtype, image.max().item(), label
        (torch.Size([1, 2, 2]), torch.float32, 1.0, tensor(1))
    """

    def __init__(self, images: Tensor, labels: Tensor, classes: Sequence[str]) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(
                f"ImageDataset takes uint8 images shaped [N, C, H, W], received "
                f"{images.dtype} {list(images.shape)}"
            )
        if labels.shape != (images.shape[0],):
            raise ValueError(
                f"ImageDataset takes one label per image: {images.shape[0]} images, labels "
                f"shaped {list(labels.shape)}"
            )
        self.images = images
        self.labels = labels.to(torch.int64)
        self.classes = tuple(classes)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.images[index].to(torch.float32).div_(255.0), self.labels[index]

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[Tensor, Tensor]]:
        """A batch of samples at once (what `DataLoader` calls when it can): one conversion."""
        picked = torch.as_tensor(indices, dtype=torch.int64)
        images = self.images[picked].to(torch.float32).div_(255.0)
        return list(zip(images.unbind(0), self.labels[picked].unbind(0), strict=True))

    def class_counts(self) -> list[int]:
        """How many images each class has, by label.

        Returns:
            one count per class, indexed by label.
        """
        return torch.bincount(self.labels, minlength=len(self.classes)).tolist()

    def __repr__(self) -> str:
        n, c, h, w = self.images.shape
        return f"ImageDataset({n} images, {c}x{h}x{w}, {len(self.classes)} classes)"
