"""The whole method for one batch, and its public face for an attribution benchmark:

    maps = path_mask_saliency(models, images, targets)        # (B, H, W), >= 0

``models`` is ``pathmask.training.trained_models(cfg, ctx)`` (the CNN to explain and the VAE that
defines the path); ``targets`` the class to explain (self label). The other label is the CNN's most
probable class other than the target on the input. Steps: best embedding (5.1) -> semantic morphing
of it into the other label (4.5) -> radial path from the morph to the best embedding, decoded (4.3)
-> path-mask (4.6). ``signed=True`` gives the red/blue map (mask times the intensity change).
"""
from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass
class Explanation:
    images: np.ndarray        # (B, H, W, C)
    self_labels: np.ndarray
    other_labels: np.ndarray
    best_codes: np.ndarray
    kept: np.ndarray          # best embedding found a sample keeping the two classes
    morph: object             # MorphResult
    paths: np.ndarray         # (B, n, H, W, C): index 0 the morph, n-1 the reconstruction
    path_codes: np.ndarray    # (B, n, d)
    mask: object              # MaskResult
    signed: np.ndarray        # (B, H, W)


def explain(models, images, self_labels, other_labels, cfg, seed: int = 0, progress: bool = False) -> Explanation:
    import jax
    from pathmask import latent, mask as M, morphing
    images = np.asarray(images, np.float32)
    self_labels, other_labels = np.asarray(self_labels), np.asarray(other_labels)
    codes, kept = latent.best_embedding(models, images, jax.random.PRNGKey(seed), cfg.best_of)
    mu, _ = models.encode(models.train.x)
    c_norm = latent.class_norms(mu, models.train.y, len(models.train.classes))
    morph = morphing.BatchedMorph(models, cfg, record=True, slots=min(cfg.morph_batch, len(images)))(
        codes, self_labels, other_labels, c_norm[other_labels], progress=progress)
    pcodes = np.asarray(latent.path(morph.codes, codes, cfg.mask_path_steps))          # morph -> input
    paths = models.decode(pcodes.reshape(-1, pcodes.shape[-1])).reshape(pcodes.shape[:2] + images.shape[1:])
    batched = M.make_batched_mask(models.classify_fn(), cfg, images.shape[1:3])
    res = M.path_mask(batched, paths, self_labels, batch=max(1, min(cfg.morph_batch, len(images))))
    return Explanation(images, self_labels, other_labels, codes, kept, morph, paths, pcodes, res,
                       M.signed_map(res.masks, paths))


def path_mask_saliency(models, images, targets, cfg=None, signed: bool = False, seed: int = 0) -> np.ndarray:
    """(model, images, targets) -> saliency maps (B, H, W). ``images`` NHWC float in [0, 1]."""
    from pathmask.config import PathMaskConfig
    cfg = cfg or models.cfg or PathMaskConfig()
    images = np.asarray(images, np.float32)
    targets = np.asarray(targets)
    logits = models.logits(images)
    masked = np.where(np.arange(logits.shape[1])[None] == targets[:, None], -np.inf, logits)
    other = masked.argmax(1)
    ex = explain(models, images, targets, other, cfg, seed)
    return ex.signed if signed else ex.mask.masks
