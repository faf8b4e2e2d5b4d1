"""``mnist5k-canvas``: the default preset's pointing-game data, composed from mnist5k.

Each sample is a ``canvas`` x ``canvas`` (56 x 56) greyscale image holding one **target** digit at
full size (28 x 28) at a random position and ``distractors`` (2) digits of other classes at half
size (14 x 14), placed where they do not overlap the target or each other. The label is the target
digit's class; its box (the bounding box of its ink, 0-based inclusive pixel indices, as
``common.data.DetectionData``) is known, so the pointing game has ground truth and a method that
points at a distractor misses. Train / test canvases draw every digit from mnist5k's train / test
split (targets: each digit of the split once; distractors: random digits of the same split), so no
test canvas contains a training digit. Seeded (part of the definition): the same arrays every time.
"""
from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np

from common.data import ImageClassification, load_dataset, register_dataset

CANVAS, DISTRACTORS, DISTRACTOR_SIZE = 56, 2, 14
SEEDS = {"train": 1001, "test": 1002}
VERSION = "1"        # bump when the composition changes (part of the fingerprint)


@dataclasses.dataclass
class CanvasDigits(ImageClassification):
    boxes: np.ndarray = None              # (N, 4) target boxes (x0, y0, x1, y1), 0-based inclusive
    distractor_boxes: np.ndarray = None   # (N, D, 4)
    distractor_labels: np.ndarray = None  # (N, D)

    def subset(self, idx, split=None):
        return dataclasses.replace(self, x=self.x[idx], y=self.y[idx], boxes=self.boxes[idx],
                                   distractor_boxes=self.distractor_boxes[idx],
                                   distractor_labels=self.distractor_labels[idx], split=split or self.split)

    def describe(self) -> dict:
        return dict(super().describe(), boxes=int(len(self.boxes)),
                    composition=f"{CANVAS}x{CANVAS} canvas, target 28x28 + {DISTRACTORS} distractors "
                                f"{DISTRACTOR_SIZE}x{DISTRACTOR_SIZE} of other classes, seed {SEEDS[self.split]}")


def _ink_box(img: np.ndarray, y0: int, x0: int) -> list[float]:
    rows, cols = np.nonzero(img > 0)
    if len(rows) == 0:
        return [x0, y0, x0 + img.shape[1] - 1, y0 + img.shape[0] - 1]
    return [x0 + cols.min(), y0 + rows.min(), x0 + cols.max(), y0 + rows.max()]


def _overlaps(a, b) -> bool:
    return not (a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1])


def compose(digits: np.ndarray, labels: np.ndarray, seed: int, canvas: int = CANVAS):
    """Canvases (N, canvas, canvas, 1) uint8, labels, target boxes, distractor boxes and labels."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    n = len(labels)
    x = np.zeros((n, canvas, canvas, 1), np.uint8)
    boxes = np.zeros((n, 4))
    dboxes = np.zeros((n, DISTRACTORS, 4))
    dlabels = np.zeros((n, DISTRACTORS), np.int64)
    small = np.stack([np.asarray(Image.fromarray(d[..., 0]).resize((DISTRACTOR_SIZE,) * 2, Image.BILINEAR))
                      for d in digits])
    for i in range(n):
        ty, tx = rng.integers(0, canvas - 28 + 1, 2)
        x[i, ty:ty + 28, tx:tx + 28, 0] = digits[i, ..., 0]
        boxes[i] = _ink_box(digits[i, ..., 0], ty, tx)
        placed = [[tx, ty, tx + 27, ty + 27]]
        for d in range(DISTRACTORS):
            j = int(rng.choice(np.nonzero(labels != labels[i])[0]))
            for _ in range(200):
                dy, dx = rng.integers(0, canvas - DISTRACTOR_SIZE + 1, 2)
                cell = [dx, dy, dx + DISTRACTOR_SIZE - 1, dy + DISTRACTOR_SIZE - 1]
                if not any(_overlaps(cell, p) for p in placed):
                    break
            placed.append(cell)
            region = x[i, dy:dy + DISTRACTOR_SIZE, dx:dx + DISTRACTOR_SIZE, 0]
            np.maximum(region, small[j], out=region)
            dboxes[i, d] = _ink_box(small[j], dy, dx)
            dlabels[i, d] = labels[j]
    return x, labels.astype(np.int64), boxes, dboxes, dlabels


@register_dataset("mnist5k-canvas", splits=("train", "test"), embedded=True,
                  description="mnist5k digits on a 56x56 canvas with 2 half-size distractor digits; target boxes")
def mnist5k_canvas(split, root):
    src = load_dataset("mnist5k", split)
    x, y, boxes, dboxes, dlabels = compose(src.x, src.y, SEEDS[split])
    fp = hashlib.sha256(f"{src.fingerprint}|{split}|{CANVAS}|{DISTRACTORS}|{DISTRACTOR_SIZE}|{SEEDS[split]}|"
                        f"{VERSION}".encode()).hexdigest()
    return CanvasDigits("mnist5k-canvas", split, x, y, src.classes, str(Path(src.source).resolve()), fp,
                        boxes=boxes, distractor_boxes=dboxes, distractor_labels=dlabels)
