"""Saliency-map metrics shared by attribution/, pathmask/ and auxiliary/ (definitions of document 002).

Every function takes maps at input resolution with values in [0, 1] (``(N, H, W)``) and scores the
ground-truth class. Notation of 002 (L788): p = probability of the class for x, o = for x * S.

- ``average_drop_increase_gain``: AD = mean([p - o]_+ / p) * 100 (002 L792), AI = mean(1[p < o]) * 100
  (L796), AG = mean([o - p]_+ / (1 - p)) * 100 (L1021).
- ``insertion_deletion``: 002's Algorithms 1-2 (L818-852). Insertion starts from the blurred image
  and scores f(blurred x) first (Algorithm 1 prints f(x), a slip: see notes/attribution.md);
  deletion sets pixels to zero. Pixels enter in decreasing saliency, ties broken by pixel index
  (stable sort). Steps of H*W/224 pixels: at 224 x 224 that is 224 steps of 224 pixels (L1168).
  The score is the area under p vs the fraction of pixels changed (trapezoid rule).
- ``pointing_game``: a hit when the map's maximum lies within ``tolerance`` pixels (15, TorchRay's
  value) of a box of the class; accuracy averaged per class (001 L1674).

The masks are applied to whatever tensor the caller passes. Document 002 masks the model's
normalised input; pass that if you want its numbers (Fake-CAM then behaves as in 002).
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F


def class_probability(model: Callable, x: torch.Tensor, target: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Softmax probability of ``target[i]`` for ``x[i]``, batched, without gradients."""
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            logits = model(x[i:i + batch_size]).float()
            out.append(logits.softmax(1).gather(1, target[i:i + batch_size, None])[:, 0])
    return torch.cat(out)


def _check_maps(x: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    if maps.dim() == 4:
        maps = maps[:, 0]
    if maps.shape != (x.shape[0], x.shape[2], x.shape[3]):
        raise ValueError(f"maps must be (N, H, W) at input resolution {tuple(x.shape[2:])}, got {tuple(maps.shape)}")
    if maps.min() < 0 or maps.max() > 1:
        raise ValueError("maps must lie in [0, 1] (min-max normalise them first)")
    return maps


def average_drop_increase_gain(p: torch.Tensor | np.ndarray, o: torch.Tensor | np.ndarray) -> dict[str, float]:
    """AD, AI, AG in percent from the clean (p) and masked (o) class probabilities."""
    p, o = np.asarray(p, dtype=np.float64), np.asarray(o, dtype=np.float64)
    ad = np.mean(np.maximum(p - o, 0.0) / p) * 100.0
    ai = np.mean(p < o) * 100.0
    ag = np.mean(np.maximum(o - p, 0.0) / np.maximum(1.0 - p, 1e-12)) * 100.0
    return {"AD": float(ad), "AI": float(ai), "AG": float(ag)}


def masked_metrics(model: Callable, x: torch.Tensor, maps: torch.Tensor, target: torch.Tensor,
                   batch_size: int = 64) -> dict[str, float]:
    """AD / AI / AG of ``maps`` for ``model`` on ``x`` (masks multiply the input elementwise)."""
    maps = _check_maps(x, maps)
    p = class_probability(model, x, target, batch_size)
    o = class_probability(model, x * maps[:, None].to(x.dtype), target, batch_size)
    return average_drop_increase_gain(p.numpy(), o.numpy())


def saliency_order(saliency: torch.Tensor) -> torch.Tensor:
    """Pixel indices by decreasing saliency; equal values keep pixel-index order."""
    return torch.sort(-saliency.flatten(), stable=True).indices


def default_blur(x: torch.Tensor) -> torch.Tensor:
    """The insertion baseline: Gaussian blur (kernel 11, sigma 5, RISE's values; 002 gives none)."""
    from torchvision.transforms.functional import gaussian_blur
    return gaussian_blur(x, kernel_size=[11, 11], sigma=[5.0, 5.0])


def auc(curve: np.ndarray) -> float:
    """Area under a curve sampled at evenly spaced fractions 0, 1/n, ..., 1 (trapezoid rule)."""
    curve = np.asarray(curve, dtype=np.float64)
    n = len(curve) - 1
    return float((curve.sum() - curve[0] / 2 - curve[-1] / 2) / max(n, 1))


def insertion_deletion(model: Callable, x: torch.Tensor, maps: torch.Tensor, target: torch.Tensor, *,
                       step_pixels: int | None = None, blur: Callable = default_blur,
                       batch_size: int = 64) -> dict[str, object]:
    """Insertion and deletion curves and their areas, per image and averaged.

    Returns ``{"insertion": mean AUC, "deletion": mean AUC, "insertion_curves": (N, S+1),
    "deletion_curves": (N, S+1)}``; higher insertion and lower deletion are better.
    """
    maps = _check_maps(x, maps)
    n, c, h, w = x.shape
    hw = h * w
    step = step_pixels or max(1, hw // 224)
    n_steps = -(-hw // step)
    blurred = blur(x)
    ins_curves, del_curves = [], []
    for i in range(n):
        order = saliency_order(maps[i])
        # keep[k] = 1 for the first k*step pixels in saliency order, for every step k = 0..n_steps
        rank = torch.empty(hw, dtype=torch.long)
        rank[order] = torch.arange(hw)
        ks = torch.arange(n_steps + 1)[:, None] * step
        shown = (rank[None, :] < ks).to(x.dtype).view(n_steps + 1, 1, h, w)
        ins = blurred[i:i + 1] * (1 - shown) + x[i:i + 1] * shown
        dele = x[i:i + 1] * (1 - shown)
        t = target[i:i + 1].expand(n_steps + 1)
        ins_curves.append(class_probability(model, ins, t, batch_size).numpy())
        del_curves.append(class_probability(model, dele, t, batch_size).numpy())
    ins_curves, del_curves = np.stack(ins_curves), np.stack(del_curves)
    return {"insertion": float(np.mean([auc(cv) for cv in ins_curves])),
            "deletion": float(np.mean([auc(cv) for cv in del_curves])),
            "insertion_curves": ins_curves, "deletion_curves": del_curves}


def pointing_game(maps: torch.Tensor | np.ndarray, boxes: Sequence[Sequence[Sequence[float]]],
                  classes: Sequence[int], tolerance: float = 15.0) -> dict[str, object]:
    """Mean per-class pointing accuracy (percent).

    ``maps[i]`` is the map of image i for class ``classes[i]``; ``boxes[i]`` the boxes
    ``(x0, y0, x1, y1)`` (pixels, inclusive) of that class in image i. The point is the first
    maximum in row-major order.
    """
    maps = np.asarray(maps)
    hits: dict[int, list[bool]] = {}
    for m, bxs, c in zip(maps, boxes, classes):
        yx = np.unravel_index(int(np.argmax(m)), m.shape)
        py, px = float(yx[0]), float(yx[1])
        hit = False
        for x0, y0, x1, y1 in bxs:
            dx = max(x0 - px, 0.0, px - x1)
            dy = max(y0 - py, 0.0, py - y1)
            hit |= (dx * dx + dy * dy) <= tolerance * tolerance
        hits.setdefault(int(c), []).append(hit)
    per_class = {c: 100.0 * float(np.mean(v)) for c, v in sorted(hits.items())}
    return {"accuracy": float(np.mean(list(per_class.values()))) if per_class else float("nan"),
            "per_class": per_class}


def fake_cam(h: int, w: int) -> torch.Tensor:
    """Poppi et al.'s Fake-CAM: 1 everywhere but the top-left pixel (0)."""
    m = torch.ones(h, w)
    m[0, 0] = 0.0
    return m


def minmax(maps: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Per-map min-max normalisation to [0, 1] over the last two dimensions."""
    flat = maps.flatten(-2)
    lo, hi = flat.min(-1, keepdim=True).values, flat.max(-1, keepdim=True).values
    return ((flat - lo) / (hi - lo).clamp_min(eps)).view_as(maps)


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, h, w) low-resolution maps to (N, H, W), bilinear (the usual choice for CAMs)."""
    return F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
