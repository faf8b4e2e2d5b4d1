"""Extremal perturbations (document 001, Fong, Patrick & Vedaldi 2019), batched.

``m_a = argmax_m Phi(m (x) x) - lambda ||vecsort(m) - r_a||^2`` (001 eq. 4, L1583), r_a = (1-a)|Omega|
zeros then a|Omega| ones; Phi the pre-softmax score of the target class; the perturbation
``(m (x) x)(u) = blur(x, sigma_max (1 - m(u)))`` read from a blur pyramid (001 L1598, footnote 2);
smooth masks by smooth-max convolution (001 eq. 6-7) of a low-resolution parameter mask.
Variants (001 L1577): preservation Phi(m x), deletion -Phi((1-m) x), hybrid ("dual" in TorchRay)
Phi(m x) - Phi((1-m) x).

What is TorchRay's and reused from it (``torchray.attribution.extremal_perturbation``): the blur
pyramid (``Perturbation``, built for the whole batch), the smooth-max mask generator's geometry and
arithmetic (``MaskGenerator``; its kernel swapped when the thesis' kernel is asked for, its
``generate`` rewritten without the nearest-upsampled copy, equal up to float rounding), SGD with
momentum 0.9 and dampening 0.9, lr 0.01, the horizontal-flip jitter on even iterations.

What is ours (why this file exists): **one optimisation for N images x A areas** (TorchRay takes
one image per call), the thesis' lambda schedule as an option (300 doubled at 1/3 and 2/3 of the
iterations, 001 L1637; TorchRay multiplies by 1.0035 every iteration), the thesis' kernel with its
minus sign restored ``exp(-max{0, z-1}^2 / 4)`` (printed without it, notes/attribution.md), and an
optional per-mask stop, off by default (a mask whose largest pixel change stays below ``stop_tol``
for ``stop_patience`` iterations is frozen and leaves the batch; the energy cannot be the test,
since TorchRay's lambda grows every iteration and the energy never settles). Every mask's energy
depends on its own parameters only, so batching does not change the gradients: without stopping,
the masks and energies equal TorchRay's per-image runs up to float rounding (tests/test_attribution.py
at 60 iterations; per iteration count up to 800: README, ``bench/saliency_methods.py --torchray-agreement``). As TorchRay, the masks returned are those
of the last iteration (generated before its SGD step), the ones the returned energy belongs to.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torchray.attribution.extremal_perturbation import MaskGenerator, Perturbation
from torchray.utils import imsmooth

VARIANTS = ("preserve", "delete", "dual")
KERNELS = {
    # TorchRay's profile (MaskGenerator.kernel)
    "torchray": lambda z: torch.exp(-2 * ((z - .5).clamp(min=0) ** 2)),
    # 001 L1637 with the minus sign restored: centrally flat up to z = 1, then a smooth decay
    "thesis": lambda z: torch.exp(-((z - 1).clamp(min=0) ** 2) / 4),
}


class SmoothMaskGenerator(MaskGenerator):
    """TorchRay's ``MaskGenerator`` (same lattice, margin, smooth-max pooling with 1/T = 20) with a
    choice of radial kernel profile. TorchRay fixes the profile inside ``__init__``; the weights are
    recomputed here from the same geometry for either profile (tested equal to TorchRay's for
    ``kernel="torchray"``)."""

    def __init__(self, shape, step, sigma, kernel: str = "torchray"):
        super().__init__(shape, step, sigma)
        profile = KERNELS[kernel]
        r = 2 * self.radius + 1
        step_inv = [torch.tensor(zm, dtype=torch.float32) / torch.tensor(zo, dtype=torch.float32)
                    for zm, zo in zip(self.shape_mid, self.shape_up)]
        uy, ux = torch.meshgrid(torch.arange(self.shape_out[0], dtype=torch.float32),
                                torch.arange(self.shape_out[1], dtype=torch.float32), indexing="ij")
        for ky in range(r):
            for kx in range(r):
                iy = torch.floor(step_inv[0] * uy) + ky - self.padding
                ix = torch.floor(step_inv[1] * ux) + kx - self.padding
                delta = torch.sqrt((uy - (self.margin + self.step * iy)) ** 2 + (ux - (self.margin + self.step * ix)) ** 2)
                self.weight[0, ky * r + kx] = profile(delta / sigma)

    def generate(self, mask_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """TorchRay's ``MaskGenerator.generate`` (same products, same smooth-max, same crop) for K
        masks at once, without its nearest upsampling: each parameter window is broadcast over the
        step x step block of output pixels it covers, so the (K, R^2, H, W) upsampled copy and its
        scatter-add backward are never made (they were ~16 % of a step on CPU, profile in the
        README). Returns (mask cropped to ``shape``, mask with margin), as TorchRay."""
        k, r, s = len(mask_in), 2 * self.radius + 1, self.step
        (mh, mw), (oh, ow) = self.shape_mid, self.shape_out
        windows = F.unfold(mask_in, (r, r), padding=(self.padding,) * 2).view(k, r * r, mh, 1, mw, 1)
        # the weights on the full step x step lattice (TorchRay drops its last step - 1 rows / columns)
        weight = F.pad(self.weight, (0, s - 1, 0, s - 1)).view(1, r * r, mh, s, mw, s)
        mask = windows * weight
        mask = (mask * F.softmax(self.coldness * mask, dim=1)).sum(dim=1, keepdim=True)
        mask = mask.view(k, 1, mh * s, mw * s)[:, :, :oh, :ow]
        if self.clamp:
            mask = mask.clamp(min=0, max=1)
        m = round(self.margin)
        return mask[:, :, m:m + self.shape[0], m:m + self.shape[1]], mask


def blur_pyramid(x: torch.Tensor, num_levels: int = 8, max_blur: float = 20.0) -> torch.Tensor:
    """(N, L, C, H, W): TorchRay's ``Perturbation`` pyramid of every image (level 0 most blurred,
    level L-1 the image itself), built for the whole batch at once."""
    p = Perturbation(x, num_levels=num_levels, max_blur=max_blur).pyramid     # (L * N, C, H, W), level-major
    return p.view(num_levels, *x.shape).transpose(0, 1)


def apply_pyramid(pyramid: torch.Tensor, owner: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``Perturbation.apply`` for masks of different images: mask k reads the pyramid of image
    ``owner[k]``; linear interpolation between levels, as TorchRay."""
    n_levels = pyramid.shape[1]
    w = mask * (n_levels - 1)                                  # (K, 1, H, W)
    k = w.floor()
    w = w - k
    k = k.long()
    y = pyramid[owner]                                         # (K, L, C, H, W)
    idx = k.unsqueeze(2).expand(-1, -1, y.shape[2], -1, -1)    # (K, 1, C, H, W)
    y0 = torch.gather(y, 1, idx)
    y1 = torch.gather(y, 1, (idx + 1).clamp(max=n_levels - 1))
    return ((1 - w.unsqueeze(2)) * y0 + w.unsqueeze(2) * y1).squeeze(1)


def extremal_perturbation(model, images: torch.Tensor, targets, areas: Sequence[float] = (0.1,), *,
                          variant: str = "preserve", max_iter: int = 800, num_levels: int = 8, step: int = 7,
                          sigma: float = 21, max_blur: float = 20.0, jitter: bool = True, lr: float = 0.01,
                          momentum: float = 0.9, regul_weight: float = 300.0, schedule: str = "torchray",
                          kernel: str = "torchray", stop_tol: float = 0.0, stop_patience: int = 20,
                          progress: bool = False) -> dict:
    """Masks of every image for every area in one optimisation.

    Returns ``{"masks": (N, A, H, W), "reward": (N, A) final reward, "energy": (N, A) final energy
    (reward + area term, TorchRay's ``hist`` sum), "iterations": (N, A) iterations each mask ran}``.
    ``schedule``: "torchray" (lambda *= 1.0035 per iteration) or "thesis" (doubled at 1/3, 2/3).
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if schedule not in ("torchray", "thesis"):
        raise ValueError(f"schedule must be 'torchray' or 'thesis', got {schedule!r}")
    device = images.device
    n, a = len(images), len(areas)
    targets = torch.as_tensor(targets, device=device).long().view(-1)
    requires = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        pyramid = blur_pyramid(images, num_levels, max_blur)
        gen = SmoothMaskGenerator(images.shape[2:], step, sigma, kernel).to(device)
        cover = [so - round(gen.margin) for so in gen.shape_out]
        if any(c < z for c, z in zip(cover, images.shape[2:])):
            # TorchRay's generator crops [margin, margin + size) of shape_out: some step / sigma pairs
            # leave it short of the image (e.g. 64 px, step 4, sigma 6: 63 px); TorchRay fails there too
            raise ValueError(f"mask step {step} / sigma {sigma:g} leave TorchRay's mask generator {cover} px short "
                             f"of the {tuple(images.shape[2:])} image; choose another sigma (step 4 with sigma 8, TorchRay's 7 with 21 work)")
        h, w = gen.shape_in
        k_all = n * a
        owner = torch.arange(n, device=device).repeat_interleave(a)           # mask k -> image
        tgt = targets[owner]
        pmask = torch.ones(k_all, 1, h, w, device=device)
        max_area = int(torch.tensor(gen.shape_out).prod())
        reference = torch.ones(k_all, max_area, device=device)
        for i, area in enumerate(areas):
            reference[i::a, :int(max_area * (1 - area))] = 0
        opt = torch.optim.SGD([pmask], lr=lr, momentum=momentum, dampening=momentum)
        active = torch.ones(k_all, dtype=torch.bool, device=device)
        iters = torch.zeros(k_all, dtype=torch.long, device=device)
        still = torch.zeros(k_all, dtype=torch.long, device=device)
        reward_out = torch.zeros(k_all, device=device)
        # the masks returned are those the reported energy was computed on (TorchRay returns the
        # last iteration's mask_, generated before the last SGD step; regenerating after the step
        # made ours one step further: -1e-3 mean, 0.037 max |difference| at 60 iterations)
        masks_out = torch.zeros(k_all, 1, *images.shape[2:], device=device)
        energy_out = torch.zeros(k_all, device=device)
        weight = regul_weight
        from common.progress import progress as show_progress
        for t in show_progress(range(max_iter), desc=f"extremal ({n} images x {a} areas)", enabled=progress,
                               leave=False):
            idx = active.nonzero()[:, 0]
            if len(idx) == 0:
                break
            pmask.requires_grad_(True)
            mask_, mask = gen.generate(pmask[idx])
            o = owner[idx]
            if variant == "preserve":
                x = apply_pyramid(pyramid, o, mask_)
            elif variant == "delete":
                x = apply_pyramid(pyramid, o, 1 - mask_)
            else:
                x = torch.cat([apply_pyramid(pyramid, o, mask_), apply_pyramid(pyramid, o, 1 - mask_)])
            if jitter and t % 2 == 0:
                x = torch.flip(x, dims=(3,))
            y = model(x)
            score = y.gather(1, tgt[idx].repeat(2 if variant == "dual" else 1)[:, None])[:, 0]
            if variant == "preserve":
                reward = score
            elif variant == "delete":
                reward = -score
            else:
                reward = score[:len(idx)] - score[len(idx):]
            mask_sorted = mask.reshape(len(idx), -1).sort(dim=1)[0]
            regul = -((mask_sorted - reference[idx]) ** 2).mean(dim=1) * weight
            energy = reward + regul
            opt.zero_grad()
            (-energy.sum()).backward()
            frozen = pmask.data[~active].clone()
            opt.step()
            pmask.data = pmask.data.clamp(0, 1)
            pmask.data[~active] = frozen           # stopped masks keep their values (momentum ignored)
            with torch.no_grad():
                e = energy.detach()
                reward_out[idx], energy_out[idx] = reward.detach(), e
                if stop_tol > 0:
                    # the mask, not the energy: with lambda growing every iteration the energy never
                    # settles, while a converged mask sits at the clamp (0 or 1) and stops moving
                    moved = (mask_.detach() - masks_out[idx]).flatten(1).abs().amax(1) >= stop_tol
                    still[idx] = torch.where(moved, torch.zeros_like(still[idx]), still[idx] + 1)
                    active &= still < stop_patience
                masks_out[idx] = mask_.detach()
                iters[idx] += 1
            if schedule == "torchray":
                weight *= 1.0035
            elif t + 1 in (math.ceil(max_iter / 3), math.ceil(2 * max_iter / 3)):
                weight *= 2
    finally:
        for p, r in zip(model.parameters(), requires):
            p.requires_grad_(r)
    return {"masks": masks_out[:, 0].view(n, a, *images.shape[2:]), "reward": reward_out.view(n, a),
            "energy": energy_out.view(n, a), "iterations": iters.view(n, a)}


def summed_saliency(masks: torch.Tensor, smooth: float = 0.09) -> torch.Tensor:
    """001's pointing-game map (L1686): the masks of all areas summed, then a Gaussian of standard
    deviation ``smooth`` x the shorter side (TorchRay's ``imsmooth``, zero padding, as its
    ``smooth`` argument). (N, A, H, W) -> (N, H, W)."""
    s = masks.sum(1, keepdim=True)
    if smooth > 0:
        s = imsmooth(s, sigma=smooth * min(s.shape[2:]), padding_mode="constant")
    return s[:, 0]


def optimal_area(model, images: torch.Tensor, targets, masks: torch.Tensor, areas: Sequence[float], *,
                 num_levels: int = 8, max_blur: float = 20.0) -> torch.Tensor:
    """a* = min{a : Phi(m_a (x) x) >= Phi(x)} (001 eq. 3, Phi_0 = Phi(x), L1635) per image, from
    preservation masks (N, A, H, W); NaN where no area reaches Phi(x)."""
    n, a = masks.shape[:2]
    targets = torch.as_tensor(targets, device=images.device).long().view(-1)
    with torch.no_grad():
        pyramid = blur_pyramid(images, num_levels, max_blur)
        owner = torch.arange(n, device=images.device).repeat_interleave(a)
        x = apply_pyramid(pyramid, owner, masks.reshape(n * a, 1, *masks.shape[2:]))
        phi = model(x).gather(1, targets[owner][:, None]).view(n, a)
        phi0 = model(images).gather(1, targets[:, None])
    ok = phi >= phi0
    area = torch.as_tensor(list(areas), dtype=torch.float32, device=images.device)
    first = torch.where(ok, area.expand(n, a), torch.full_like(phi, float("inf"))).min(1).values
    return torch.where(torch.isinf(first), torch.full_like(first, float("nan")), first)
