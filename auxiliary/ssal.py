"""Training objective (Eq 7.4), joint prediction (Eq 7.5), learned linear combination (+LC) and
per-head class activation maps of SSAL models.

Eq 7.5, our reading (the note asks us to decide): the product is over **probabilities**,
``score_i = p_f(i) * prod_b p_{g_b}(gamma_b(i)) ** eta`` with ``p = softmax(logits)``, and the
prediction is its argmax. The printed ``softmax(...)`` of that product is monotonic in it, so it
cannot change the argmax; ``joint_probability`` returns the product normalised to sum to one (the
joint distribution the text names), computed in log space. ``eta`` applies only with more than one
branch (L1697); with one branch the exponent is 1.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from common.trainer import multi_head_step


def ssal_step(gammas: Sequence[np.ndarray | torch.Tensor], lambdas: Sequence[float] | None = None) -> Callable:
    """``fit`` step for Eq 7.4: ``L = lambda_f CE(f(x), y) + sum_i lambda_i CE(g_i(x), gamma_i(y))``:
    ``common.trainer.multi_head_step`` with each branch scored against the group of the label.
    ``lambdas``: (lambda_f, lambda_1, ...), all 1 by default (the thesis gives none)."""
    maps = [torch.as_tensor(np.asarray(g), dtype=torch.long) for g in gammas]
    lambdas = [1.0] * (len(maps) + 1) if lambdas is None else [float(v) for v in lambdas]
    if len(lambdas) != len(maps) + 1:
        raise ValueError(f"{len(lambdas)} lambdas for {len(maps)} branches: give lambda_f and one per branch")
    return multi_head_step(lambdas, target_maps=[None, *maps], names=["f", *(f"g{i}" for i in range(1, len(maps) + 1))])


def joint_log_scores(main_logits: torch.Tensor, branch_logits: Sequence[torch.Tensor],
                     gammas: Sequence[np.ndarray | torch.Tensor], eta: float = 1.0) -> torch.Tensor:
    """log of Eq 7.5's product: ``log p_f(i) + e * sum_b log p_{g_b}(gamma_b(i))``, e = eta with more
    than one branch, 1 with one."""
    e = eta if len(branch_logits) > 1 else 1.0
    out = F.log_softmax(main_logits.float(), 1)
    for g, gam in zip(branch_logits, gammas):
        idx = torch.as_tensor(np.asarray(gam), dtype=torch.long, device=g.device)
        out = out + e * F.log_softmax(g.float(), 1)[:, idx]        # (n, G) -> (n, k) by gamma
    return out


def joint_probability(main_logits, branch_logits, gammas, eta: float = 1.0) -> torch.Tensor:
    """Eq 7.5 normalised: P(y = i | x) proportional to the product."""
    return torch.softmax(joint_log_scores(main_logits, branch_logits, gammas, eta), 1)


def predict_heads(model: nn.Module, x: torch.Tensor, batch_size: int = 512) -> tuple[torch.Tensor, ...]:
    """All heads' logits over ``x`` (eval mode), through the common predictor."""
    from common.trainer import predict
    out = predict(model, [x], batch_size=batch_size)
    return out if isinstance(out, tuple) else (out,)


def jp_linear_weights(n_classes: int, group_counts: Sequence[int], gammas: Sequence[np.ndarray],
                      eta: float = 1.0) -> torch.Tensor:
    """The (k, k + sum G_b) weights of a linear layer over the concatenated log-probabilities of f and
    every branch that computes Eq 7.5's log-score exactly: 1 on f's own class, e (eta with more than
    one branch) on branch b's group of the class. +LC's hypothesis class contains JP through these."""
    e = eta if len(gammas) > 1 else 1.0
    w = torch.zeros(n_classes, n_classes + sum(group_counts))
    w[torch.arange(n_classes), torch.arange(n_classes)] = 1.0
    off = n_classes
    for g, gam in zip(group_counts, gammas):
        w[torch.arange(n_classes), off + torch.as_tensor(np.asarray(gam), dtype=torch.long)] = e
        off += g
    return w


def train_linear_combination(heads: Sequence[torch.Tensor], y: torch.Tensor, cfg, work_dir,
                             gammas: Sequence[np.ndarray] | None = None, eta: float = 1.0,
                             val_frac: float = 0.25) -> nn.Module:
    """+LC / LinearComb: a linear classifier on the concatenated outputs of f and every g_i,
    trained afterwards (the network frozen: its outputs are precomputed) with the common trainer.

    With ``gammas`` the layer starts at JP's weights (``jp_linear_weights``) and is early-stopped at
    the coarsest grain: ``val_frac`` of the items (stratified) is kept aside, and the trained layer
    replaces JP's only if it is more accurate there (``lin.kept``: "trained" or "jp")."""
    from common.data import train_val_split
    from common.trainer import fit
    feats = torch.cat([F.log_softmax(h.float(), 1) for h in heads], 1)
    lin = nn.Linear(feats.shape[1], heads[0].shape[1])
    if gammas is None:
        fit(lin, (feats, y), cfg, work_dir, desc="linear-comb")
        lin.kept = "trained"
        return lin
    with torch.no_grad():
        lin.weight.copy_(jp_linear_weights(heads[0].shape[1], [h.shape[1] for h in heads[1:]], gammas, eta))
        lin.bias.zero_()
    init = {k: v.clone() for k, v in lin.state_dict().items()}
    tr, va = train_val_split(len(y), val_frac, 0, labels=y.numpy())
    tr, va = torch.as_tensor(tr), torch.as_tensor(va)
    fit(lin, (feats[tr], y[tr]), cfg, work_dir, desc="linear-comb")

    def acc():
        with torch.no_grad():
            return float((lin(feats[va]).argmax(1) == y[va]).float().mean())

    trained, trained_acc = {k: v.clone() for k, v in lin.state_dict().items()}, acc()
    lin.load_state_dict(init)
    if trained_acc > acc():
        lin.load_state_dict(trained)
        lin.kept = "trained"
    else:
        lin.kept = "jp"
    return lin


def linear_combination_logits(lin: nn.Module, heads: Sequence[torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return lin(torch.cat([F.log_softmax(h.float(), 1) for h in heads], 1))


# --------------------------------------------------------------------------------------------------
# CAMs of every head (Fig 7.5 / A.8)
# --------------------------------------------------------------------------------------------------
class _Head(nn.Module):
    """One head of a multi-head model as a single-output model (what pytorch-grad-cam expects)."""

    def __init__(self, model: nn.Module, index: int):
        super().__init__()
        self.model, self.index = model, index

    def forward(self, x):
        out = self.model(x)
        return out[self.index] if isinstance(out, (tuple, list)) else out


def head_target_layer(model: nn.Module, index: int) -> nn.Module:
    """The module whose output feeds the head's global average pool: the backbone's last segment
    (plus its final norm) for the main head, the branch's feature stack for branch ``index``."""
    if index == 0:
        bb = model.backbone if hasattr(model, "backbone") else model
        return bb.head_norm if not isinstance(bb.head_norm, nn.Identity) else bb.segments[-1]
    return model.branches[index - 1].features


def cam_function(index: int = 0, gamma: np.ndarray | None = None) -> Callable:
    """A saliency function ``(model, images, targets) -> maps (n, H, W) in [0, 1]`` for head
    ``index`` (0: f, b: branch b). Targets are labels of the original task; a branch explains the
    group ``gamma[target]``. Grad-CAM from pytorch-grad-cam: for a head that is GAP followed by a
    linear layer it is CAM (Zhou et al.) up to a positive factor; for Fig 7.3's GAP-FC-ReLU-FC
    branches (no CAM exists) it is the gradient-weighted generalisation."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    def saliency(model: nn.Module, images: torch.Tensor, targets) -> np.ndarray:
        was_training = model.training
        model.eval()
        t = np.asarray(targets.cpu() if torch.is_tensor(targets) else targets, dtype=np.int64)
        if index > 0:
            t = np.asarray(gamma)[t]
        with GradCAM(_Head(model, index), [head_target_layer(model, index)]) as cam:
            maps = cam(images, [ClassifierOutputTarget(int(c)) for c in t])
        model.train(was_training)
        return maps

    return saliency


class SSALClassifier(nn.Module):
    """An SSAL model seen as one classifier: ``forward`` returns the log of Eq 7.5's normalised joint
    probability (its softmax is the joint distribution), so that saliency methods and their metrics,
    which expect one logits tensor, explain and score the ensemble's prediction. ``ssal`` is the
    multi-head model, ``gammas`` the label -> group map of each branch."""

    def __init__(self, ssal: nn.Module, gammas: Sequence[np.ndarray], eta: float = 1.0):
        super().__init__()
        if len(gammas) != len(ssal.branches):
            raise ValueError(f"{len(gammas)} group maps for {len(ssal.branches)} branches")
        self.ssal, self.eta = ssal, eta
        self.gammas = [np.asarray(g) for g in gammas]

    @property
    def cam_layer(self) -> nn.Module:
        """The layer a Grad-CAM of the ensemble looks at: the one feeding f's global average pool."""
        return head_target_layer(self.ssal, 0)

    def forward(self, x):
        heads = self.ssal(x)
        return F.log_softmax(joint_log_scores(heads[0], heads[1:], self.gammas, self.eta), 1)
