"""``twodigit100``: a 100-class set of real handwritten two-digit numbers built from mnist5k.

Class n in 00..99 is an image of two mnist5k digits side by side (28 x 56): the tens digit n // 10
left, the ones digit n % 10 right. Train images use train digits only, test images test digits only
(mnist5k's own stratified split), drawn with a fixed seed, a fixed number per class. Its confusion
structure is natural (numbers sharing a digit, 4/9, 3/5/8), which is what SSAL's grouping needs:
with k = 10 labels, G in {2, 4, 10, 20} groups could not mean what they mean on CIFAR100.
"""
from __future__ import annotations

import hashlib

import numpy as np

from common.data import ImageClassification, load_dataset, register_dataset

NAME = "twodigit100"
PER_CLASS = {"train": 50, "test": 20}      # 5000 train images (80 % fit / 20 % held out), 2000 test
BUILD_SEED = 1234                          # part of the dataset's definition, like mnist5k's split


def compose(x: np.ndarray, y: np.ndarray, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, 28, 56, 1) uint8 images and labels 0..99, ``per_class`` per number, digits drawn at random
    (with replacement) among the given digit images."""
    rng = np.random.default_rng(seed)
    by_digit = [np.flatnonzero(y == d) for d in range(10)]
    images, labels = [], []
    for n in range(100):
        left = x[rng.choice(by_digit[n // 10], per_class)]
        right = x[rng.choice(by_digit[n % 10], per_class)]
        images.append(np.concatenate([left, right], axis=2))
        labels.append(np.full(per_class, n, dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels)


@register_dataset(NAME, splits=("train", "test"), embedded=True,
                  description="100 two-digit numbers 00-99 (28x56), pairs of mnist5k digits of the same split")
def _twodigit100(split, root):
    digits = load_dataset("mnist5k", split)
    x, y = compose(digits.x, digits.y, PER_CLASS[split], BUILD_SEED + (split == "test"))
    # the recipe is part of the identity: a change to it changes the fingerprint (cached stages retrain)
    recipe = f"{digits.fingerprint}|{PER_CLASS[split]}|{BUILD_SEED}|{split}|side-by-side v1"
    fp = "sha256:" + hashlib.sha256(recipe.encode()).hexdigest()[:16]
    return ImageClassification(NAME, split, x, y, [f"{n:02d}" for n in range(100)], digits.source, fp)
