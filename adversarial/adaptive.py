"""The adaptive evaluation (beyond the thesis; issue 23): robust accuracy as a curve over the
thesis' own budgets, for f_i, f_i o A_S and f_i o A_i, under attacks that adapt to the defense.

Budgets. Every L_inf radius a registered attack of Fig 6.3 reaches (``AttackFn.linf_radii``: FGSM's
eps, BIM's steps x eps, since BIM's n steps of size eps stay in that ball), in 0-255 units; the L2
budgets are the same radii as L2 balls of radius eps * sqrt(D) (D = pixels x channels): the smallest
L2 ball holding the whole L_inf ball, so every FGSM / BIM perturbation of that budget lies in it.
``cfg.l2_budgets`` / ``cfg.autoattack_budgets``: "all" radii, or only the iterative attacks' (BIM's,
the budgets the claim judges; the default preset, for cost).

Attacks, each on every image, independently per budget (so "accuracy non-increasing in the budget"
can fail):
- APGD-CE, ``steps`` iterations (AutoAttack's published 100), ``restarts`` random restarts, each
  later restart only on the images every earlier one failed on. Its first restart is exactly
  AutoAttack standard's first stage, so
- AutoAttack standard continues from that restart's survivors: APGD-T (9 target classes), FAB-T
  (9 target classes), both at ``steps`` iterations, then Square (``square_queries``; published
  5000), each on the images every earlier stage failed on (torchattacks 3.5.1's classes, with the
  published iteration counts set: torchattacks' own defaults are 10 iterations, not AutoAttack's 100).
- APGD-DLR (untargeted), ``steps`` iterations, ``restarts`` restarts;
- PGD with a random start (Madry et al.'s step 2.5 eps / steps), ``pgd_steps``, ``pgd_restarts``.

Checks of Athalye et al. (2018) at one budget (``check_eps``): Square alone (a black-box attack) and
transfer from f_i (the undefended classifier's APGD-CE images, evaluated on the defended model);
and an unbounded attack (APGD-CE at L_inf radius 1: any image is reachable).
"""
from __future__ import annotations

import numpy as np
import torch

from adversarial import attacks as A


def linf_budgets(cfg, iterative_only: bool = False) -> list:
    """Sorted distinct L_inf radii (0-255 units) of the registered attacks of ``cfg.attacks`` (of the
    iterative ones only with ``iterative_only``)."""
    from adversarial.config import attack_items
    radii = set()
    for _, settings in attack_items(cfg.attacks):
        fn = A.attack_fn(settings)
        if fn.linf_radii is not None and (fn.iterative or not iterative_only):
            radii.update(round(float(r), 6) for r in fn.linf_radii(settings))
    return sorted(radii)


def l2_radius(eps255: float, shape) -> float:
    """The L2 ball holding the L_inf ball of radius eps255/255 on images of ``shape`` (C, H, W)."""
    return eps255 / 255.0 * float(np.sqrt(np.prod(shape)))


def _robust(model, x, y, idx):
    return A.predict(model, x[idx]) == y[idx]


def _run_on(atk_factory, model, x, y, alive: torch.Tensor, seed: int):
    """Attack the images of ``alive`` (bool) once; returns (still alive (bool, n), adversarial images
    for the attacked ones or None)."""
    idx = torch.nonzero(alive).flatten()
    alive = alive.clone()
    if len(idx) == 0:
        return alive, None
    torch.manual_seed(seed)
    atk = atk_factory()
    adv = atk(x[idx], y[idx]).detach()
    ok = A.predict(model, adv) == y[idx]
    alive[idx[~ok]] = False
    full = x.clone()
    full[idx] = adv
    return alive, full


def adaptive_at(model, x, y, norm: str, eps: float, n_classes: int, steps: int, restarts: int, square_queries: int,
                pgd_steps: int, pgd_restarts: int, seed: int = 0, autoattack: bool = True) -> dict:
    """Robust (bool, n) per attack at one budget (``eps`` in [0, 1] units for L_inf, absolute for L2):
    clean, apgd_ce1 (AutoAttack's first stage), apgd_ce (all restarts), autoattack (without
    ``autoattack``: absent), apgd_dlr, pgd, worst (robust to every one that ran)."""
    import torchattacks as ta
    clean = A.predict(model, x) == y
    out = {"clean": clean}

    def apgd(loss, s):
        return lambda: ta.APGD(model, norm=norm, eps=eps, steps=steps, n_restarts=1, seed=s, loss=loss)
    alive, _ = _run_on(apgd("ce", seed), model, x, y, clean, seed)
    out["apgd_ce1"] = alive
    ce = alive
    for r in range(1, restarts):
        ce, _ = _run_on(apgd("ce", seed + 1000 * r), model, x, y, ce, seed + 1000 * r)
    out["apgd_ce"] = ce
    if autoattack:
        aa = alive
        aa, _ = _run_on(lambda: ta.APGDT(model, norm=norm, eps=eps, steps=steps, n_restarts=1, seed=seed,
                                         n_classes=n_classes), model, x, y, aa, seed)
        aa, _ = _run_on(lambda: ta.FAB(model, norm=norm, eps=eps, steps=steps, n_restarts=1, seed=seed,
                                       multi_targeted=True, n_classes=n_classes), model, x, y, aa, seed)
        aa, _ = _run_on(lambda: ta.Square(model, norm=norm, eps=eps, n_queries=square_queries, n_restarts=1,
                                          seed=seed), model, x, y, aa, seed)
        out["autoattack"] = aa
    dlr = clean
    for r in range(restarts):
        dlr, _ = _run_on(apgd("dlr", seed + 1000 * r), model, x, y, dlr, seed + 1000 * r)
    out["apgd_dlr"] = dlr
    _, pgd_ok = A.pgd_restarts(model, x, y, norm, eps, pgd_steps, pgd_restarts, seed=seed)
    out["pgd"] = pgd_ok & clean
    out["worst"] = out["apgd_ce"] & out.get("autoattack", clean) & out["apgd_dlr"] & out["pgd"]
    return out


def apgd_ce_images(model, x, y, eps: float, steps: int, seed: int = 0):
    """APGD-CE (L_inf, one restart) adversarial images of every image (the clean image where the
    model is already wrong): what f_i's attack transfers to the defended models."""
    import torchattacks as ta
    torch.manual_seed(seed)
    return ta.APGD(model, norm="Linf", eps=eps, steps=steps, n_restarts=1, seed=seed, loss="ce")(x, y).detach()


def square_alone(model, x, y, eps: float, queries: int, seed: int = 0):
    """Robust (bool, n) to Square (L_inf) alone, on every clean-correct image."""
    import torchattacks as ta
    clean = A.predict(model, x) == y
    alive, _ = _run_on(lambda: ta.Square(model, norm="Linf", eps=eps, n_queries=queries, n_restarts=1, seed=seed),
                       model, x, y, clean, seed)
    return alive
