"""Image sources for the capacity pipeline: uint8 NHWC batches by index lists.

``ArraySource`` holds a dataset in memory (the digits, padded to the autoencoder's size);
``FolderSource`` reads a torchvision dataset lazily (ImageNet, any image folder), resizing the
short side and centre-cropping (256 -> 224 at the paper preset, L1046). Both serve the same
``batches(index_lists)`` (uint8 NHWC numpy, for the JAX stages and the evaluation) and both are
map-style torch Datasets of ``(float CHW in [0, 1], label)`` (for ``common.trainer.fit``), so one
object serves every stage. Training batch order comes from ``common.jax_loop.epoch_batches``
(a function of (seed, epoch) alone, so a resumed run sees the batches an uninterrupted one would).
"""
from __future__ import annotations

import dataclasses
from typing import Iterable, Sequence

import numpy as np


def pad_to(x: np.ndarray, size: int) -> np.ndarray:
    """Zero-pad NHWC uint8 images symmetrically to size x size (MNIST's background is 0)."""
    h, w = x.shape[1:3]
    if h > size or w > size:
        raise ValueError(f"images of {h}x{w} do not fit in {size}x{size}")
    t, l = (size - h) // 2, (size - w) // 2
    return np.pad(x, ((0, 0), (t, size - h - t), (l, size - w - l), (0, 0)))


def _as_torch_item(x: np.ndarray, y) -> tuple:
    """One uint8 HWC image as the classifiers take it: float CHW in [0, 1], and its int label."""
    import torch
    return torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1).float() / 255.0, int(y)


@dataclasses.dataclass
class ArraySource:
    """Images in memory: numpy batches by index lists, and a torch Dataset of single items."""
    x: np.ndarray          # uint8 NHWC
    y: np.ndarray          # int64 (or -1 when unlabeled)

    def __len__(self) -> int:
        return len(self.x)

    @property
    def image_shape(self):
        return tuple(self.x.shape[1:])

    def batches(self, index_lists: Iterable[Sequence[int]]):
        for idx in index_lists:
            idx = np.asarray(idx)
            yield self.x[idx], self.y[idx]

    def subset(self, idx) -> "ArraySource":
        return ArraySource(self.x[idx], self.y[idx])

    def __getitem__(self, i: int):
        return _as_torch_item(self.x[i], self.y[i])

    def tensors(self):
        """(images (N, C, H, W) float in [0, 1], labels (N,)): the whole set as two tensors, which
        ``common.trainer.fit`` holds on the device (faster than a DataLoader for small sets)."""
        import torch
        return torch.from_numpy(self.x).permute(0, 3, 1, 2).float() / 255.0, torch.from_numpy(self.y)


class FolderSource:
    """A torchvision-style dataset (items: PIL image or (PIL image, label)) resized and cropped."""

    def __init__(self, dataset, resize: int = 256, crop: int = 224, num_workers: int = 4):
        self.dataset, self.resize, self.crop, self.num_workers = dataset, resize, crop, num_workers

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def image_shape(self):
        return (self.crop, self.crop, 3)

    def _item(self, i):
        from torchvision.transforms import functional as TF
        item = self.dataset[i]
        img, label = (item if isinstance(item, tuple) else (item, -1))
        img = TF.center_crop(TF.resize(img.convert("RGB"), self.resize), self.crop)
        return np.asarray(img, dtype=np.uint8), int(label)

    def __getitem__(self, i: int):
        return _as_torch_item(*self._item(i))

    def batches(self, index_lists: Iterable[Sequence[int]]):
        from torch.utils.data import DataLoader
        items = _Items(self)

        def collate(batch):
            return np.stack([b[0] for b in batch]), np.array([b[1] for b in batch], dtype=np.int64)
        lists = [list(map(int, idx)) for idx in index_lists]
        loader = DataLoader(items, batch_sampler=lists, num_workers=self.num_workers if len(lists) > 1 else 0,
                            collate_fn=collate)
        yield from loader


class _Items:
    def __init__(self, src):
        self.src = src

    def __len__(self):
        return len(self.src)

    def __getitem__(self, i):
        return self.src._item(i)


def ordered_batches(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
