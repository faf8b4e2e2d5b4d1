"""Path-mask's saliency maps under common/'s one signature (registered on import; declared under the
icv.saliency_methods entry points in pyproject.toml), and the contrastive score of the "beyond the
document" table.

Design: path-mask needs more than a classifier (the VAE that defines the path, the class-wise norms,
the morphing and mask settings). The model handed to the method carries them: a torch classifier
with an attribute ``pathmask_models`` (a ``pathmask.training.Models``: the Flax CNN and VAE the
torch module was copied from, with their config), as ``explainable_cnn(models)`` builds it.
``applies_to`` restricts the method to such models, so a benchmark over other classifiers skips it
instead of failing. The maps are computed by the JAX program on the Flax twin of the torch module
(the copy is tested to give the same logits), so path-mask and the captum / pytorch-grad-cam methods
explain the very same function.
"""
from __future__ import annotations

import numpy as np
import torch

from common.saliency import register_method
from common.saliency_metrics import minmax


def explainable_cnn(models) -> torch.nn.Module:
    """The torch copy of ``models``' CNN (eval mode) carrying ``pathmask_models`` for path-mask."""
    from pathmask.torch_models import TorchCNN
    arch = models.cfg.resolved_arch()
    net = TorchCNN(arch, models.cnn_vars)
    net.pathmask_models = models
    return net


def _has_path_models(model) -> bool:
    return getattr(model, "pathmask_models", None) is not None


@register_method("pathmask", label="Path-mask", family="perturbation", implementation="ours (pathmask/, JAX)",
                 source="003 sec. 4.6 (semantic morphing 4.5, best embedding 5.1)", applies_to=_has_path_models)
def path_mask_maps(model, images, targets, *, seed: int = 0, keep: list | None = None, signed: bool = False):
    """(N, H, W) path-mask masks in [0, 1] (per-map min-max) for ``targets`` (the self label); the
    other label is the CNN's most probable class other than the target. ``keep``: a list to which
    the ``pathmask.attribution.Explanation`` of this call is appended (its morphs feed the
    contrastive score). ``signed``: |mask x intensity change| instead of the mask."""
    from pathmask.attribution import explain
    models = model.pathmask_models
    x = images.detach().cpu().permute(0, 2, 3, 1).numpy().astype(np.float32)       # NCHW -> NHWC
    t = torch.as_tensor(targets).cpu().numpy()
    logits = models.logits(x)
    other = np.where(np.arange(logits.shape[1])[None] == t[:, None], -np.inf, logits).argmax(1)
    ex = explain(models, x, t, other, models.cfg, seed)
    if keep is not None:
        keep.append(ex)
    maps = np.abs(ex.signed) if signed else ex.mask.masks
    return minmax(torch.as_tensor(maps, dtype=torch.float32, device=images.device))


def contrastive_drop(model, x: torch.Tensor, maps: torch.Tensor, morphs: torch.Tensor, self_labels, other_labels,
                     top: float) -> np.ndarray:
    """Per image: the drop of p_self - p_other when the ``top`` fraction of pixels ranked by ``maps``
    takes the morph's values (the pixels are moved to the other end of the path), all other pixels
    kept. Higher = the map found the pixels that carry self against other."""
    n, c, h, w = x.shape
    k = max(1, int(round(top * h * w)))
    order = maps.reshape(n, -1).argsort(dim=1, descending=True)[:, :k]
    sel = torch.zeros(n, h * w)
    sel.scatter_(1, order, 1.0)
    sel = sel.view(n, 1, h, w)
    moved = x * (1 - sel) + morphs * sel
    idx = torch.arange(n)
    s, o = torch.as_tensor(self_labels), torch.as_tensor(other_labels)
    with torch.no_grad():
        p0, p1 = torch.softmax(model(x), 1), torch.softmax(model(moved), 1)
    return ((p0[idx, s] - p0[idx, o]) - (p1[idx, s] - p1[idx, o])).numpy()
