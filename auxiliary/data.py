"""``twodigit100``: a 100-class set of real handwritten two-digit numbers built from mnist5k.

Class n in 00..99 is an image of two mnist5k digits side by side (28 x 56): the tens digit n // 10
left, the ones digit n % 10 right. Train images use train digits only, test images test digits only
(mnist5k's own stratified split), drawn with a fixed seed, a fixed number per class. Its confusion
structure is natural (numbers sharing a digit, 4/9, 3/5/8), which is what SSAL's grouping needs:
with k = 10 labels, G in {2, 4, 10, 20} groups could not mean what they mean on CIFAR100.
"""
from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

from common.data import ImageClassification, load_dataset, register_dataset, train_val_split

NAME = "twodigit100"
PER_CLASS = {"train": 50, "test": 20}      # 5000 train images (80 % fit / 20 % held out), 2000 test
HOLD_PER_CLASS = 10                        # of train's 50 per class: composed from the held-out digits only
HOLD_DIGITS_FRAC = 0.2                     # train digits held out (stratified) before composing
BUILD_SEED = 1234                          # part of the dataset's definition, like mnist5k's split


@dataclasses.dataclass
class TwoDigit(ImageClassification):
    """twodigit100 with what each composite is made of: ``digits[i] = (left, right)``, indices of the
    mnist5k digit images of the split (the clusters of a bootstrap over digit images), and ``hold[i]``:
    the composite belongs to the held-out part of train (made of held-out digits only)."""
    digits: np.ndarray = None
    hold: np.ndarray = None

    def subset(self, idx, split=None):
        return dataclasses.replace(self, x=self.x[idx], y=self.y[idx], split=split or self.split,
                                   digits=self.digits[idx], hold=self.hold[idx])


def compose_indices(y: np.ndarray, per_class: int, seed: int, pool: np.ndarray | None = None) -> np.ndarray:
    """(100 * per_class, 2) indices into the digit images ``y`` labels: ``per_class`` composites per
    number, left digit n // 10, right n % 10, drawn at random (with replacement) among ``pool``."""
    rng = np.random.default_rng(seed)
    pool = np.arange(len(y)) if pool is None else np.asarray(pool)
    by_digit = [pool[y[pool] == d] for d in range(10)]
    out = []
    for n in range(100):
        out.append(np.stack([rng.choice(by_digit[n // 10], per_class), rng.choice(by_digit[n % 10], per_class)], 1))
    return np.concatenate(out)


def compose(x: np.ndarray, y: np.ndarray, per_class: int, seed: int, pool: np.ndarray | None = None):
    """(n, 28, 56, 1) uint8 images, labels 0..99 and the (left, right) digit indices."""
    ids = compose_indices(y, per_class, seed, pool)
    images = np.concatenate([x[ids[:, 0]], x[ids[:, 1]]], axis=2)
    return images, np.repeat(np.arange(100, dtype=np.int64), per_class), ids


@register_dataset(NAME, splits=("train", "test"), embedded=True,
                  description="100 two-digit numbers 00-99 (28x56), pairs of mnist5k digits of the same split; "
                              "train's held-out part from held-out train digits")
def _twodigit100(split, root):
    digits = load_dataset("mnist5k", split)
    seed = BUILD_SEED + (split == "test")
    if split == "train":     # split the digits first, then compose: the held-out part shows unseen digits
        fit_d, hold_d = train_val_split(len(digits.y), HOLD_DIGITS_FRAC, BUILD_SEED, labels=digits.y)
        xf, yf, idf = compose(digits.x, digits.y, PER_CLASS[split] - HOLD_PER_CLASS, seed, fit_d)
        xh, yh, idh = compose(digits.x, digits.y, HOLD_PER_CLASS, seed + 7, hold_d)
        x, y, ids = np.concatenate([xf, xh]), np.concatenate([yf, yh]), np.concatenate([idf, idh])
        hold = np.r_[np.zeros(len(yf), bool), np.ones(len(yh), bool)]
    else:
        x, y, ids = compose(digits.x, digits.y, PER_CLASS[split], seed)
        hold = np.zeros(len(y), bool)
    # the recipe is part of the identity: a change to it changes the fingerprint (cached stages retrain)
    recipe = f"{digits.fingerprint}|{PER_CLASS[split]}|{HOLD_PER_CLASS}|{BUILD_SEED}|{split}|side-by-side v2"
    fp = "sha256:" + hashlib.sha256(recipe.encode()).hexdigest()[:16]
    return TwoDigit(NAME, split, x, y, [f"{n:02d}" for n in range(100)], digits.source, fp, digits=ids, hold=hold)
