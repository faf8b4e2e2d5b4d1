"""The threat model of 6.2.2, batched on the device, and the adaptive attacks of the extension.

Pixels live in [0, 1]; the thesis' eps values are in 0-255 units (eps / 255 here); Gamma clips to
[0, 1]; the loss of the gradient attacks is the cross-entropy against the true label; untargeted.

- FGSM (Eq 6.2): one input gradient serves every eps (the sign does not depend on eps), so a curve
  of k budgets costs one backward pass, not k. Equal to ``torchattacks.FGSM(eps=e/255)`` (tested).
- BIM (Eq 6.3): eps is the STEP size, n steps, clipping to [0, 1] only, no projection onto an
  eps-ball (changes "at most 10 eps big", L1418). Equal to ``torchattacks.BIM(eps=n*e/255,
  alpha=e/255, steps=n)`` (tested), whose projection never binds at that radius.
- C&W L2 (Eq 6.4), untargeted: minimise ||delta||^2 + c * max(Z_y - max_{i != y} Z_i, -kappa) with
  Adam (lr 1e-3), 100 iterations, c = 10, kappa = 0, no binary search, no early abort, no "best
  adversarial" bookkeeping: the delta after the last iteration is multiplied by eps in {0.5, 1, 2,
  4} (a dimensionless factor, L1424) and the result clipped. torchattacks' CW returns the smallest
  successful example instead, so it is not this attack; ours is written here and tested on its
  behaviour (monotone in eps, pixels in [0, 1], objective decreasing). Box constraint: C&W's own
  change of variables x + delta = (tanh(w) + 1) / 2 (``box="tanh"``, as the original and
  torchattacks; pixels at exactly 0 or 1 cannot move), or projected Adam on delta (``box="clip"``).
  The margin takes the max over the other classes properly (torchattacks' ``f`` multiplies by a
  one-hot mask, which returns 0 when every other logit is negative).

Adaptive (beyond the thesis): PGD with random restarts (``torchattacks.PGD`` / ``PGDL2``), each
restart only on the images still classified correctly; APGD and AutoAttack's stages live in
adversarial/adaptive.py.
"""
from __future__ import annotations

import contextlib
from typing import Sequence

import torch
import torch.nn.functional as F


def _autocast(x, enabled: bool):
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=x.device.type, dtype=torch.bfloat16)


def input_gradient(model, x, y, autocast: bool = False):
    """d CE(model(x), y) / dx (mean over the batch, as torchattacks: the sign is what matters)."""
    x = x.detach().clone().requires_grad_(True)
    with _autocast(x, autocast):
        loss = F.cross_entropy(model(x).float(), y)
    return torch.autograd.grad(loss, x)[0]


def fgsm(model, x, y, eps: Sequence[float], autocast: bool = False) -> list:
    """Eq 6.2 for every eps (0-255 units) from one gradient: [clip(x + eps/255 * sign(g))]."""
    s = input_gradient(model, x, y, autocast).sign()
    return [(x + (e / 255.0) * s).clamp(0.0, 1.0).detach() for e in eps]


def bim(model, x, y, eps: float, steps: int = 10, autocast: bool = False):
    """Eq 6.3: ``steps`` FGSM steps of size eps/255, each clipped to [0, 1]; no eps-ball."""
    adv = x.detach().clone()
    for _ in range(steps):
        adv = (adv + (eps / 255.0) * input_gradient(model, adv, y, autocast).sign()).clamp(0.0, 1.0).detach()
    return adv


def cw_margin(logits, y, kappa: float = 0.0):
    """Untargeted C&W term: max(Z_y - max_{i != y} Z_i, -kappa), per sample."""
    real = logits.gather(1, y[:, None])[:, 0]
    other = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf")).amax(1)
    return (real - other).clamp(min=-kappa)


def cw_delta(model, x, y, steps: int = 100, lr: float = 1e-3, c: float = 10.0, kappa: float = 0.0,
             box: str = "tanh", autocast: bool = False, return_history: bool = False):
    """Eq 6.4 untargeted, Adam, fixed c; returns delta after the last iteration (and the objective
    per iteration with ``return_history``)."""
    x = x.detach()
    if box == "tanh":
        w = torch.atanh((2 * x - 1).clamp(-1, 1)).detach().requires_grad_(True)   # +-inf at 0 / 1: frozen
        to_img = lambda: (torch.tanh(w) + 1) / 2   # noqa: E731
        var = w
    elif box == "clip":
        var = torch.zeros_like(x, requires_grad=True)
        to_img = lambda: x + var   # noqa: E731
    else:
        raise ValueError(f"box '{box}': tanh or clip")
    opt = torch.optim.Adam([var], lr=lr)
    history = []
    for _ in range(steps):
        adv = to_img()
        l2 = ((adv - x) ** 2).flatten(1).sum(1)
        with _autocast(x, autocast):
            logits = model(adv).float()
        cost = l2.sum() + c * cw_margin(logits, y, kappa).sum()
        # the gradient of the optimised variable only (never the model's weights, frozen or not)
        var.grad = torch.autograd.grad(cost, var)[0]
        opt.step()
        if box == "clip":
            with torch.no_grad():
                var.copy_((x + var).clamp(0.0, 1.0) - x)
        if return_history:             # a host sync per iteration: only when asked for
            history.append(float(cost.detach()))
    with torch.no_grad():
        delta = (to_img() - x).detach()
    return (delta, history) if return_history else delta


def cw_scaled(x, delta, eps: Sequence[float]) -> list:
    """The thesis' control of C&W's size: clip(x + eps * delta) per factor eps."""
    return [(x + e * delta).clamp(0.0, 1.0) for e in eps]


# --------------------------------------------------------------------------------------------------
# The registry: attacks as data. ``cfg.attacks`` (adversarial/config.py) holds one settings entry per
# attack; its ``fn`` names a function registered here, called as fn(model, x, y, settings) -> one
# adversarial batch per budget of ``settings.eps``. Tables, plots, stage keys and claims iterate over
# the config's entries, so adding an attack is one function here and one config entry.
# --------------------------------------------------------------------------------------------------
import dataclasses as _dc


@_dc.dataclass(frozen=True)
class AttackFn:
    fn: object               # (model, x, y, settings, autocast=False) -> [adv per budget]
    iterative: bool          # "iterative at least as strong as single-step" compares these with FGSM
    budget: str              # what eps means, for the tables
    # settings -> the L_inf radius (0-255 units) each budget's perturbations stay within, or None
    # (C&W's factor on delta bounds no L_inf ball): the adaptive curve's budgets
    linf_radii: object = None


ATTACKS: dict = {}


def register_attack(name: str, *, iterative: bool, budget: str, linf_radii=None):
    def deco(fn):
        if name in ATTACKS:
            raise ValueError(f"attack '{name}' registered twice")
        ATTACKS[name] = AttackFn(fn, iterative, budget, linf_radii)
        return fn
    return deco


def attack_fn(settings) -> AttackFn:
    try:
        return ATTACKS[settings.fn]
    except KeyError:
        raise KeyError(f"attack function '{settings.fn}' is not registered (known: {', '.join(ATTACKS)})") from None


@register_attack("fgsm", iterative=False, budget="eps in 0-255 units", linf_radii=lambda s: list(s.eps))
def _fgsm_attack(model, x, y, s, autocast=False):
    return fgsm(model, x, y, s.eps, autocast)


@register_attack("bim", iterative=True, budget="step eps in 0-255 units, steps x eps in all",
                 linf_radii=lambda s: [s.steps * e for e in s.eps])
def _bim_attack(model, x, y, s, autocast=False):
    return [bim(model, x, y, e, s.steps, autocast) for e in s.eps]


@register_attack("cw", iterative=True, budget="a factor on C&W's final delta")
def _cw_attack(model, x, y, s, autocast=False):
    delta = cw_delta(model, x, y, s.steps, s.lr, s.c, s.kappa, s.box, autocast)
    return cw_scaled(x, delta, s.eps)


def normalised_l2_ratios(x, adv):
    """||x - x_adv||_2 / ||x||_2 per sample, in pixel space (the terms of Eq 6.1)."""
    num = (adv - x).flatten(1).norm(dim=1)
    den = x.flatten(1).norm(dim=1).clamp_min(1e-12)
    return num / den


@torch.no_grad()
def predict(model, x, batch_size: int = 500):
    return torch.cat([model(x[i:i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])


# --------------------------------------------------------------------------------------------------
# Adaptive attacks (torchattacks)
# --------------------------------------------------------------------------------------------------
def pgd_restarts(model, x, y, norm: str, eps: float, steps: int = 100, restarts: int = 5, seed: int = 0):
    """PGD with a random start, ``restarts`` times; each restart attacks only the images every
    earlier restart failed on. Returns (adversarial images, correct after every restart (bool))."""
    import torchattacks
    alpha = 2.5 * eps / steps          # Madry et al.'s step rule
    adv = x.detach().clone()
    correct = predict(model, x) == y
    for r in range(restarts):
        idx = torch.nonzero(correct).flatten()
        if len(idx) == 0:
            break
        torch.manual_seed(seed * 1000 + r)
        atk = (torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True) if norm == "Linf"
               else torchattacks.PGDL2(model, eps=eps, alpha=alpha, steps=steps, random_start=True))
        cand = atk(x[idx], y[idx])
        still = predict(model, cand) == y[idx]
        broken = idx[~still]
        adv[broken] = cand[~still]
        correct[broken] = False
    return adv, correct
