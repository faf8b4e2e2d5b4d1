"""Saliency-map metrics shared by attribution/, pathmask/ and auxiliary/ (definitions of document 002).

Every function takes maps at input resolution with values in [0, 1] (``(N, H, W)``) and scores the
ground-truth class. Notation of 002 (L788): p = probability of the class for x, o = for x * S.
Everything runs on the model's device (its parameters' device, else the input's), in batches; the
results come back to the host once, at the end.

- ``average_drop_increase_gain``: AD = mean([p - o]_+ / p) * 100 (002 L792), AI = mean(1[p < o]) * 100
  (L796), AG = mean([o - p]_+ / (1 - p)) * 100 (L1021).
- ``insertion_deletion``: 002's Algorithms 1-2 (L818-852). Insertion starts from the blurred image
  and scores f(blurred x) first (Algorithm 1 prints f(x), a slip: see notes/attribution.md);
  deletion sets pixels to zero. Pixels enter in decreasing saliency, ties broken by pixel index
  (stable sort). Always 224 steps: after step k the first floor(k * H * W / 224) pixels are changed,
  i.e. steps of H*W/224 pixels (notes/attribution.md). At 224 x 224 that is 224 steps of 224 pixels
  exactly as in 002 (L1168) and RISE; at 28 x 28 it is 3.5 pixels a step on average. (ceil(H*W/224)
  pixels a step would reach the last pixel after 196 of the 224 steps at 28 x 28 and add a flat tail
  worth 1/8 of the area.) The score is the area under p vs the fraction of steps (trapezoid rule,
  RISE's ``auc``).
- ``rise_blur``: the insertion start, RISE's (evaluation.py): an 11 x 11 kernel that is
  ``scipy.ndimage.gaussian_filter`` (sigma 5, its default reflect mode) of a centred delta, applied
  per channel with **zero padding** of 5 (so borders darken, as in RISE). Works at any image size
  (torchvision's gaussian_blur refuses images smaller than its kernel and reflect-pads).
- ``pointing_game``: TorchRay's ``PointingGame``: the point is the map's first maximum (row-major);
  a hit when some pixel of the class's region lies at distance < ``tolerance`` (15, strict, as
  TorchRay); per-class accuracy hits / (hits + misses),
  averaged over the classes **that have scored samples** (TorchRay averages over all
  ``num_classes``, a class without samples counting 0: identical on VOC07 / COCO14, where every
  class has images, but a cap on a subset: 9 of 10 digit classes present cap it at 90 %, a
  1000-image ImageNet subset near 63 %). ``PointingGame`` is the accumulator. The region is a
  boolean mask or boxes in 0-based inclusive pixel indices (``common.data.DetectionData``; VOC's
  1-based XML boxes are converted there, as TorchRay's ``voc_as_mask`` does).
  ``pointing_game_pairs`` lists the (image, class) pairs TorchRay's ``PointingGameBenchmark``
  evaluates on VOC 2007 / COCO 2014, "all" or its EBP "difficult" subset.

The masks are applied to whatever tensor the caller passes. Document 002 masks the model's
normalised input; pass that if you want its numbers (Fake-CAM then behaves as in 002).
"""
from __future__ import annotations

import functools
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

INSERTION_DELETION_STEPS = 224


def model_device(model: Callable, fallback: torch.device) -> torch.device:
    """The device of the model's first parameter or buffer; ``fallback`` for parameter-free callables."""
    if isinstance(model, torch.nn.Module):
        for t in model.parameters():
            return t.device
        for t in model.buffers():
            return t.device
    return fallback


def class_probability(model: Callable, x: torch.Tensor, target: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Softmax probability of ``target[i]`` for ``x[i]``, batched on the model's device, without
    gradients. Returns a float32 tensor on that device."""
    device = model_device(model, x.device)
    target = torch.as_tensor(target, device=device)
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            logits = model(x[i:i + batch_size].to(device)).float()
            out.append(logits.softmax(1).gather(1, target[i:i + batch_size, None])[:, 0])
    return torch.cat(out)


def _check_maps(x: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    maps = torch.as_tensor(maps)
    if maps.dim() == 4:
        maps = maps[:, 0]
    if maps.shape != (x.shape[0], x.shape[2], x.shape[3]):
        raise ValueError(f"maps must be (N, H, W) at input resolution {tuple(x.shape[2:])}, got {tuple(maps.shape)}")
    if maps.min() < 0 or maps.max() > 1:
        raise ValueError("maps must lie in [0, 1] (min-max normalise them first)")
    return maps


def average_drop_increase_gain(p: torch.Tensor | np.ndarray, o: torch.Tensor | np.ndarray) -> dict[str, float]:
    """AD, AI, AG in percent from the clean (p) and masked (o) class probabilities (on any device)."""
    p = torch.as_tensor(p).to(torch.float64)
    o = torch.as_tensor(o).to(device=p.device, dtype=torch.float64)
    ad = ((p - o).clamp_min(0) / p).mean() * 100.0
    ai = (p < o).to(torch.float64).mean() * 100.0
    ag = ((o - p).clamp_min(0) / (1.0 - p).clamp_min(1e-12)).mean() * 100.0
    ad, ai, ag = torch.stack([ad, ai, ag]).tolist()        # one transfer
    return {"AD": ad, "AI": ai, "AG": ag}


def masked_metrics(model: Callable, x: torch.Tensor, maps: torch.Tensor, target: torch.Tensor,
                   batch_size: int = 64) -> dict[str, float]:
    """AD / AI / AG of ``maps`` for ``model`` on ``x`` (masks multiply the input elementwise)."""
    maps = _check_maps(x, maps)
    p = class_probability(model, x, target, batch_size)
    o = class_probability(model, x * maps[:, None].to(device=x.device, dtype=x.dtype), target, batch_size)
    return average_drop_increase_gain(p, o)


def saliency_order(saliency: torch.Tensor) -> torch.Tensor:
    """Pixel indices by decreasing saliency; equal values keep pixel-index order."""
    return torch.sort(-saliency.flatten(), stable=True).indices


@functools.lru_cache(maxsize=4)
def _rise_kernel(klen: int, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter
    delta = np.zeros((klen, klen))
    delta[klen // 2, klen // 2] = 1.0
    return gaussian_filter(delta, sigma)


def rise_blur(x: torch.Tensor, klen: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """RISE's insertion baseline (see the module docstring): per-channel blur, zero padding."""
    c = x.shape[1]
    k = torch.as_tensor(_rise_kernel(klen, sigma), dtype=x.dtype, device=x.device)
    return F.conv2d(x, k.expand(c, 1, klen, klen), padding=klen // 2, groups=c)


default_blur = rise_blur


def auc(curve: torch.Tensor | np.ndarray) -> torch.Tensor | float:
    """Area under curves sampled at evenly spaced fractions 0, 1/n, ..., 1 (trapezoid rule), over
    the last dimension. A tensor in, a tensor out (same device); anything else gives a float."""
    if not isinstance(curve, torch.Tensor):
        return float(auc(torch.as_tensor(np.asarray(curve, dtype=np.float64))))
    curve = curve.to(torch.float64)
    n = curve.shape[-1] - 1
    return (curve.sum(-1) - curve[..., 0] / 2 - curve[..., -1] / 2) / max(n, 1)


def step_counts(hw: int, n_steps: int = INSERTION_DELETION_STEPS, step_pixels: int | None = None) -> torch.Tensor:
    """Pixels changed after each step 0..S: floor(k * hw / n_steps) (S = n_steps), or with a fixed
    ``step_pixels``: min(k * step_pixels, hw) for k up to ceil(hw / step_pixels)."""
    if step_pixels:
        k = torch.arange(-(-hw // step_pixels) + 1)
        return (k * step_pixels).clamp_max(hw)
    return torch.arange(n_steps + 1) * hw // n_steps


def insertion_deletion(model: Callable, x: torch.Tensor, maps: torch.Tensor, target: torch.Tensor, *,
                       n_steps: int = INSERTION_DELETION_STEPS, step_pixels: int | None = None,
                       blur: Callable = rise_blur, batch_size: int = 64) -> dict[str, object]:
    """Insertion and deletion curves and their areas, per image and averaged.

    Returns ``{"insertion": mean AUC, "deletion": mean AUC, "insertion_curves": (N, S+1),
    "deletion_curves": (N, S+1)}`` (curves as numpy arrays); higher insertion and lower deletion are
    better. The S+1 perturbed images of one input are built and scored in batches of
    ``batch_size`` on the model's device.
    """
    maps = _check_maps(x, maps)
    device = model_device(model, x.device)
    x, maps = x.to(device), maps.to(device)
    target = torch.as_tensor(target, device=device)
    n, c, h, w = x.shape
    hw = h * w
    counts = step_counts(hw, n_steps, step_pixels).to(device)
    blurred = blur(x)
    ins_curves = torch.empty(n, len(counts), device=device)
    del_curves = torch.empty(n, len(counts), device=device)
    with torch.no_grad():
        for i in range(n):
            # rank[j] = position of pixel j in saliency order; pixel j is changed at step k iff rank < counts[k]
            rank = torch.empty(hw, dtype=torch.long, device=device)
            rank[saliency_order(maps[i])] = torch.arange(hw, device=device)
            for s in range(0, len(counts), batch_size):
                shown = (rank[None, :] < counts[s:s + batch_size, None]).to(x.dtype).view(-1, 1, h, w)
                t = target[i:i + 1].expand(len(shown))
                ins = blurred[i:i + 1] * (1 - shown) + x[i:i + 1] * shown
                ins_curves[i, s:s + len(shown)] = class_probability(model, ins, t, batch_size)
                del_curves[i, s:s + len(shown)] = class_probability(model, x[i:i + 1] * (1 - shown), t, batch_size)
    ins_auc, del_auc = auc(ins_curves), auc(del_curves)
    return {"insertion": float(ins_auc.mean()), "deletion": float(del_auc.mean()),
            "insertion_curves": ins_curves.cpu().numpy(), "deletion_curves": del_curves.cpu().numpy()}


def _region_hit(region, point: tuple[int, int], size: tuple[int, int], tolerance: float, device) -> bool | None:
    """TorchRay's test for one sample: some pixel of the region within distance < tolerance of
    ``point`` = (row, col). ``region``: a boolean (H, W) mask (bool dtype), or (K, 4) boxes (x0, y0, x1, y1) in
    0-based inclusive pixel indices covering columns ceil(x0)..floor(x1) (clipped to the image),
    or None (pair not evaluated)."""
    if region is None:
        return None
    py, px = point
    h, w = size
    region = torch.as_tensor(region, device=device)
    if region.dtype == torch.bool:      # a mask; anything numeric is boxes (a (K, 4) mask is ambiguous)
        if region.shape != (h, w):
            raise ValueError(f"a region mask must be {size} like the maps, got {tuple(region.shape)}")
        ys = torch.arange(h, device=device, dtype=torch.float32)[:, None]
        xs = torch.arange(w, device=device, dtype=torch.float32)[None, :]
        accept = (ys - py) ** 2 + (xs - px) ** 2 < tolerance ** 2
        return bool((region.bool() & accept).any())
    boxes = region.to(torch.float64).reshape(-1, 4)
    c0, c1 = boxes[:, 0].ceil().clamp_min(0), boxes[:, 2].floor().clamp_max(w - 1)
    r0, r1 = boxes[:, 1].ceil().clamp_min(0), boxes[:, 3].floor().clamp_max(h - 1)
    valid = (c0 <= c1) & (r0 <= r1)
    # nearest pixel of each box to the point: the point clamped into the box
    dx = torch.maximum(c0 - px, torch.zeros_like(c0)).maximum(px - c1)
    dy = torch.maximum(r0 - py, torch.zeros_like(r0)).maximum(py - r1)
    return bool((valid & (dx ** 2 + dy ** 2 < tolerance ** 2)).any())


class PointingGame:
    """The pointing game as an accumulator, as TorchRay's benchmark uses its ``PointingGame``:
    ``add(map, region, cls)`` scores one (map, class) pair, ``aggregate()`` gives the mean per-class
    accuracy over the classes that have scored pairs (see the module docstring).

    ``map``: (H, W); ``region``: a boolean (H, W) mask or (K, 4) boxes in 0-based inclusive pixel
    indices, or None to leave the pair out (counted in ``skipped``). The point is the map's first
    maximum in row-major order; a hit when the region has a pixel at distance < ``tolerance``."""

    def __init__(self, num_classes: int, tolerance: float = 15.0):
        self.num_classes, self.tolerance = int(num_classes), float(tolerance)
        self.hits = torch.zeros(self.num_classes, dtype=torch.float64)
        self.misses = torch.zeros(self.num_classes, dtype=torch.float64)
        self.skipped = 0
        self.each: list[bool | None] = []        # per pair in the order added (None: skipped)

    def add(self, saliency, region, cls: int) -> bool | None:
        saliency = torch.as_tensor(saliency)
        if saliency.dim() != 2:
            raise ValueError(f"a map must be (H, W), got {tuple(saliency.shape)}")
        h, w = saliency.shape
        hit = _region_hit(region, divmod(int(saliency.flatten().argmax()), w), (h, w), self.tolerance,
                          saliency.device)
        self.each.append(hit)
        if hit is None:
            self.skipped += 1
        elif hit:
            self.hits[int(cls)] += 1
        else:
            self.misses[int(cls)] += 1
        return hit

    def aggregate(self) -> dict[str, object]:
        """``accuracy`` (%; NaN when nothing was scored), ``per_class`` (%; NaN for classes without
        pairs), ``classes_scored``, ``hits`` / ``misses`` per class, ``skipped``, ``each``."""
        n = self.hits + self.misses
        present = n > 0
        per_class = torch.where(present, self.hits / n.clamp_min(1), torch.full_like(n, float("nan")))
        acc = 100.0 * float(per_class[present].mean()) if bool(present.any()) else float("nan")
        return {"accuracy": acc, "per_class": (100.0 * per_class).tolist(), "classes_scored": int(present.sum()),
                "hits": self.hits.long().tolist(), "misses": self.misses.long().tolist(), "skipped": self.skipped,
                "each": list(self.each)}


def pointing_game(maps: torch.Tensor | np.ndarray, regions: Sequence, classes: Sequence[int], num_classes: int,
                  tolerance: float = 15.0) -> dict[str, object]:
    """Mean per-class pointing accuracy in percent over the classes with scored samples (a
    ``PointingGame`` fed with every sample). ``maps[i]`` is the map of sample i for class
    ``classes[i]``; ``regions[i]`` that class's region: a boolean (H, W) mask (COCO: TorchRay uses
    segmentation masks), (K, 4) boxes in 0-based inclusive pixel indices (``DetectionData.targets``),
    or None (left out, counted in ``skipped``)."""
    maps = torch.as_tensor(maps)
    if maps.dim() != 3:
        raise ValueError(f"maps must be (N, H, W), got {tuple(maps.shape)}")
    if not len(regions) == len(classes) == len(maps):
        raise ValueError(f"{len(maps)} maps, {len(regions)} regions and {len(classes)} classes")
    game = PointingGame(num_classes, tolerance)
    for m, region, c in zip(maps, regions, classes):
        game.add(m, region, c)
    return game.aggregate()


@functools.lru_cache(maxsize=2)
def _ebp_difficult_flags(dataset_name: str) -> dict[str, list[bool]]:
    """EBP's "difficult" (image, class) flags as TorchRay ships them (package data of the pinned torchray)."""
    from importlib.resources import files
    name = {"voc2007": "pointing_game_ebp_voc07_difficult.txt", "coco2014": "pointing_game_ebp_coco_difficult.txt"}
    rows = (files("torchray.benchmark") / name[dataset_name]).read_text().splitlines()
    return {r.split("\t")[0]: [bool(int(v)) for v in r.split("\t")[1:]] for r in rows if r.strip()}


def pointing_game_pairs(data, subset: str = "all") -> list[tuple[int, int]]:
    """The (image index, class id) pairs TorchRay's ``PointingGameBenchmark`` scores on a
    ``common.data.DetectionData`` (voc2007 / coco2014): every class present in the image, except a
    VOC class all of whose boxes are marked difficult; ``subset="difficult"`` keeps only the pairs
    EBP's lists flag (an image absent from the list keeps all its pairs, as in TorchRay)."""
    if subset not in ("all", "difficult"):
        raise ValueError(f"subset must be 'all' or 'difficult', got {subset!r}")
    flags = _ebp_difficult_flags(data.name) if subset == "difficult" else {}
    pairs = []
    for i, t in enumerate(data.targets):
        for c in sorted({int(v) for v in t["labels"]}):
            if data.name == "voc2007" and bool(np.all(t["difficult"][t["labels"] == c])):
                continue
            if data.image_names[i] in flags and not flags[data.image_names[i]][c]:
                continue
            pairs.append((i, c))
    return pairs


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
