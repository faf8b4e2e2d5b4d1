"""Tiny synthetic image folders in the layouts the paper presets read (ImageNet class folders, a
pre-training folder), for code-path tests with random torchvision weights."""
from pathlib import Path

import numpy as np


def write_images(folder: Path, n: int, seed: int) -> None:
    from PIL import Image
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(folder / f"img{i}.png")


def imagenet_root(root: Path, train: int, val: int, pretrain: int = 8) -> Path:
    """``root/imagenet/{train,val}/<wnid>/`` with two classes, and ``root/yfcc/a/`` for pre-training."""
    for split, n in (("train", train), ("val", val)):
        for k, wnid in enumerate(("n01440764", "n01443537")):
            write_images(root / "imagenet" / split / wnid, n, seed=k + (10 if split == "val" else 0))
    write_images(root / "yfcc" / "a", pretrain, seed=99)
    return root
