"""The methods written here from the sources (no maintained library has them in batched form):
Opti-CAM (002), meaningful perturbations (001, Fong & Vedaldi 2017), Fake-CAM (002's sanity row)
and a centre baseline (001's "Ctr" row of the pointing game). Extremal perturbations: extremal.py."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from attribution.layers import default_layer, layer_activations
from common.saliency_metrics import fake_cam, minmax, upsample


def opti_cam(model, images: torch.Tensor, targets, *, layer=None, max_iter: int = 100, lr: float = 0.1,
             stop_delta: float = 1e-10, return_info: bool = False):
    """Opti-CAM (002 eq. 2.4-2.7): u* = argmax_u y_c(f(x * n(up(sum_k softmax(u)_k A^k)))).

    A^k: the (post-ReLU) feature maps of ``layer`` for x, fixed. Adam lr 0.1, at most 100
    iterations; image i stops when its loss changed by less than ``stop_delta`` (1e-10, 002 L1031)
    and leaves the batch. Ours (002 leaves them open): u starts at 0 (uniform weights = the mean
    feature map), bilinear upsampling, the final u (not the best seen) gives the map.
    """
    layer = layer if layer is not None else default_layer(model)
    targets = torch.as_tensor(targets, device=images.device).long().view(-1)
    feats, _ = layer_activations(model, layer, images)
    feats = feats.clamp_min(0)                      # the method assumes non-negative maps
    n, k = feats.shape[:2]
    size = images.shape[2:]
    u = torch.zeros(n, k, device=images.device, requires_grad=True)
    opt = torch.optim.Adam([u], lr=lr)
    active = torch.ones(n, dtype=torch.bool, device=images.device)
    last = torch.full((n,), float("inf"), device=images.device)
    iters = torch.zeros(n, dtype=torch.long)
    requires = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)

    def saliency(uu, ff):
        s = (uu.softmax(1)[:, :, None, None] * ff).sum(1)
        return minmax(upsample(s, size))

    try:
        for _ in range(max_iter):
            idx = active.nonzero()[:, 0]
            if len(idx) == 0:
                break
            s = saliency(u[idx], feats[idx])
            logits = model(images[idx] * s[:, None])
            loss = -logits.gather(1, targets[idx, None])[:, 0]
            opt.zero_grad()
            loss.sum().backward()
            frozen = u.data[~active].clone()
            opt.step()
            u.data[~active] = frozen
            with torch.no_grad():
                iters[idx.cpu()] += 1
                done = (loss.detach() - last[idx]).abs() < stop_delta
                last[idx] = loss.detach()
                active[idx[done]] = False
    finally:
        for p, r in zip(model.parameters(), requires):
            p.requires_grad_(r)
    with torch.no_grad():
        maps = saliency(u, feats)
    return (maps, {"iterations": iters}) if return_info else maps


def _tv(m: torch.Tensor, beta: float) -> torch.Tensor:
    dy = (m[..., 1:, :] - m[..., :-1, :]).abs().pow(beta).flatten(1).sum(1)
    dx = (m[..., :, 1:] - m[..., :, :-1]).abs().pow(beta).flatten(1).sum(1)
    return dy + dx


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    from torchray.utils import imsmooth
    return imsmooth(x, sigma=sigma, padding_mode="replicate") if sigma > 0 else x


def _circle_init(model, images, blurred, classes, mask_size: int, scale_sigma, size) -> torch.Tensor:
    """001 L1323: "the smallest centered circular mask that suppresses the score of the original
    image by 99 % when compared to that of the fully perturbed image" (per image; radii on the mask
    lattice; the whole image deleted when no circle does)."""
    n = len(images)
    yy, xx = torch.meshgrid(torch.arange(mask_size, dtype=torch.float32, device=images.device),
                            torch.arange(mask_size, dtype=torch.float32, device=images.device), indexing="ij")
    dist = ((yy - (mask_size - 1) / 2) ** 2 + (xx - (mask_size - 1) / 2) ** 2).sqrt()
    radii = torch.arange(0, mask_size + 1, device=images.device, dtype=torch.float32) * 0.5
    with torch.no_grad():
        p0 = model(images).softmax(1).gather(1, classes).sum(1)
        pb = model(blurred).softmax(1).gather(1, classes).sum(1)
        chosen = torch.zeros(n, 1, mask_size, mask_size, device=images.device)
        found = torch.zeros(n, dtype=torch.bool, device=images.device)
        for r in radii:
            m = (dist > r).float()[None, None].expand(n, 1, -1, -1)      # m = 0 (deleted) inside the circle
            up = scale_sigma(F.interpolate(m, size=size, mode="bilinear", align_corners=False))
            p = model(up * images + (1 - up) * blurred).softmax(1).gather(1, classes).sum(1)
            ok = (p0 - p >= 0.99 * (p0 - pb)) & ~found
            chosen[ok] = m[ok]
            found |= ok
    return chosen


MASK_SIDE_001 = 28        # 001's mask: 28 x 28 for a 224 px image (upsampling factor 8, L1323)
TOP1_L1, TOP1_BETA = 1e-4, 3.0     # 001 L1323 (the visualisations)
TOP5_L1, TOP5_BETA = 1e-3, 2.0     # 001 L1405, L1411 (the tables: "min. top-5 hyper-parameters")


def meaningful_penalties(m: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(||1 - m||_1, sum_u ||grad m(u)||_beta^beta) of 001 eq. 4 for masks m (N, 1, s, s), per image,
    in the units of 001's 28 x 28 mask, so that their balance (with each other and with the
    probability) is 001's at any mask side s. 001 sums over the pixels of its 28 x 28 mask (1/28 of
    the image side each): one of our pixels covers (28/s)^2 of 001's (both sums scaled by that), and
    our neighbours lie 28/s of 001's pixels apart (grad m per 001 pixel = our difference x s/28).
    At s = 28 both are 001's plain sums. Scaling both sums by (28/s)^2 alone (the first version)
    made the TV term (28/s)^beta too heavy against the L1 term for a smooth mask (64x at s = 7,
    beta = 3)."""
    side = m.shape[-1]
    cells = (MASK_SIDE_001 / side) ** 2
    l1 = cells * (1 - m).abs().flatten(1).sum(1)
    tv = cells * (side / MASK_SIDE_001) ** beta * _tv(m[:, 0], beta)
    return l1, tv


def meaningful_objective(model, images: torch.Tensor, blurred: torch.Tensor, classes: torch.Tensor,
                         m: torch.Tensor, *, l1: float, tv: float, beta: float, mask_sigma: float,
                         shift: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """001 eq. 4 per image for one jitter ``shift``: ``l1 ||1 - m||_1 + tv TV_beta(m) + sum_c p_c``,
    the probabilities summed over ``classes`` (N, K) of the perturbed image (K = 1: the target;
    K = 5: the top-5 variant), the mask upsampled bilinearly to the image, blurred by g_{mask_sigma}
    and rolled by ``shift`` against the image; penalties as ``meaningful_penalties``."""
    up = gaussian_blur(F.interpolate(m, size=images.shape[2:], mode="bilinear", align_corners=False), mask_sigma)
    if shift != (0, 0):
        up = torch.roll(up, shifts=shift, dims=(2, 3))
    prob = model(up * images + (1 - up) * blurred).softmax(1).gather(1, classes).sum(1)
    l1_term, tv_term = meaningful_penalties(m, beta)
    return l1 * l1_term + tv * tv_term + prob


def meaningful_perturbation(model, images: torch.Tensor, targets, *, max_iter: int = 300, lr: float = 0.1,
                            mask_size: int = 28, l1: float | None = None, tv: float = 1e-2,
                            beta: float | None = None, blur_sigma: float = 10.0, mask_sigma: float = 5.0,
                            jitter: int = 4, top5: bool = False, seed: int = 0):
    """Meaningful perturbations, deletion game with blur (001 eq. 4, L1315, settings L1323):
    ``min_m l1 ||1 - m||_1 + tv sum ||grad m||_beta^beta + E_tau[p_c(Phi(x(. - tau), m))]``,
    m = 1 keeps a pixel (001 L1272), ``Phi(x, m) = m x + (1 - m) blur(x, sigma0)`` (the blend the
    authors' code uses for the blur operator), m a ``mask_size``^2 mask upsampled bilinearly and
    blurred by g_{sigma_m}, jitter tau an integer shift drawn from [0, ``jitter``), Adam lr 0.1,
    ``max_iter`` iterations, m initialised as the smallest centred circle that suppresses 99 % of the
    score drop of the fully blurred image (L1323), clamped to [0, 1].

    Two objectives in 001: the visualisations (L1323) minimise the target's probability with
    l1 = 1e-4, beta = 3 (the default, ``top5=False``); the localisation and pointing tables (Tab 1-2,
    L1405, L1411) minimise "the top-5 predicted classes' softmax scores" (their sum here; classes of
    the unperturbed image, ``targets`` unused) with l1 = 1e-3, beta = 2 (``top5=True``; registered
    as "meaningful-top5"). ``l1`` / ``beta`` left at None take the chosen objective's values; tv is
    1e-2 in both. Penalties in 001's 28 x 28 units at any ``mask_size`` (``meaningful_penalties``).
    All images in one optimisation. Returns the deleted region 1 - m (the evidence), min-max
    normalised.
    """
    l1 = l1 if l1 is not None else (TOP5_L1 if top5 else TOP1_L1)
    beta = beta if beta is not None else (TOP5_BETA if top5 else TOP1_BETA)
    device = images.device
    targets = torch.as_tensor(targets, device=device).long().view(-1)
    size = images.shape[2:]
    blurred = gaussian_blur(images, blur_sigma)
    smooth = lambda u: gaussian_blur(u, mask_sigma)          # noqa: E731
    with torch.no_grad():
        logits = model(images)
        # top-5 of a model with fewer classes: all of them (their probabilities then sum to 1 and the
        # objective is blind; 001's ImageNet models have 1000 classes)
        classes = logits.topk(min(5, logits.shape[1]), 1).indices if top5 else targets[:, None]
    m = _circle_init(model, images, blurred, classes, mask_size, smooth, size).requires_grad_(True)
    opt = torch.optim.Adam([m], lr=lr)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    requires = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        for _ in range(max_iter):
            # the mask jittered against the image (E_tau of eq. 4)
            shift = tuple(torch.randint(0, jitter, (2,), generator=gen).tolist()) if jitter > 1 else (0, 0)
            loss = meaningful_objective(model, images, blurred, classes, m, l1=l1, tv=tv, beta=beta,
                                        mask_sigma=mask_sigma, shift=shift)
            opt.zero_grad()
            loss.sum().backward()
            opt.step()
            m.data.clamp_(0, 1)
    finally:
        for p, r in zip(model.parameters(), requires):
            p.requires_grad_(r)
    with torch.no_grad():
        up = smooth(F.interpolate(m, size=size, mode="bilinear", align_corners=False))[:, 0]
    return minmax(1 - up)


def fake_cam_maps(model, images: torch.Tensor, targets) -> torch.Tensor:
    """Fake-CAM (Poppi et al. 2021, 002 L798): 0 at the top-left pixel, 1 elsewhere, for every image."""
    return fake_cam(*images.shape[2:]).to(images.device).expand(len(images), -1, -1).clone()


def center_maps(model, images: torch.Tensor, targets) -> torch.Tensor:
    """The centre baseline of the pointing game (001's "Ctr"): a Gaussian bump at the image centre."""
    h, w = images.shape[2:]
    ys = torch.arange(h, device=images.device, dtype=torch.float32) - (h - 1) / 2
    xs = torch.arange(w, device=images.device, dtype=torch.float32) - (w - 1) / 2
    g = torch.exp(-(ys[:, None] ** 2 + xs[None, :] ** 2) / (2 * (0.25 * min(h, w)) ** 2))
    return minmax(g.expand(len(images), h, w).clone())
