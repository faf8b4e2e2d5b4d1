"""One function per table / figure of chapter 6 (``fn(cfg, ctx) -> metrics`` for one training seed).

Roles: the thesis' f_R (ResNet50) and f_I (Inception-v3) are cfg.role_R / cfg.role_I of capacity's
classifiers (default: the digit ResNet "residual" and the wide shallow net "wide"; paper: resnet50,
inception_v3). Metric keys use slugs: fR, fI, fR_AR (StSNet f_R o A_R), fI_AI, fR_AS (f_R o A_S),
bpda_fR_AR (Fig 6.5), fR_from_fR_AR (Fig 6.4: attack on the StSNet, evaluated on f_R).
"""
from __future__ import annotations

import numpy as np

from adversarial.curves import curve, matched_gap, max_rise, paired_diff
from adversarial.pipeline import ATTACKS, LABEL, attack_run, prepare, slug

ROLES = ("R", "I")


def _st(r):
    return f"f_{r} o A_{r}"


def _runs_6_3(state):
    """Every attack of Fig 6.3 (the StSNet runs also evaluate on f_i alone, for Fig 6.4)."""
    runs = {}
    for r in ROLES:
        runs[f"f_{r}"] = attack_run(state, f"f_{r}", [f"f_{r}"])
        runs[_st(r)] = attack_run(state, _st(r), [_st(r), f"f_{r}"])
    runs["f_R o A_S"] = attack_run(state, "f_R o A_S", ["f_R o A_S"])
    return runs


def _curve_of(runs, attacked, evaluated, atk):
    return runs[attacked][atk][evaluated]


def _plot_curves(ctx, name, caption, series, cfg):
    """series: [(label, run dict per attack, style kwargs)] -> one panel per attack."""
    from common.plotting import plt
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, atk in zip(axes, ATTACKS):
        for label, per_attack, style in series:
            l2, acc = curve(**per_attack[atk])
            ax.plot(l2, acc, marker="o", ms=3, label=label, **style)
        ax.set_title(LABEL[atk])
        ax.set_xlabel(r"normalised $\bar L_2$ (Eq 6.1)")
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("top-1 accuracy (%)")
    axes[-1].legend(fontsize=8, loc="best")
    fig.tight_layout()
    ctx.savefig(fig, name, caption)


def _gap_metrics(m, key, a, b, cfg, seed):
    g, lo, hi = matched_gap(a, b, cfg.n_grid, cfg.n_boot, seed)
    m[key], m[key + "_lo"], m[key + "_hi"] = g, lo, hi


def _curve_metrics(m, tag, per_attack, cfg):
    """Accuracy and Lbar_2 at the largest budget of each attack, the clean accuracy, the largest rise."""
    first = per_attack[ATTACKS[0]]
    m[f"clean_{tag}"] = 100.0 * float(first["clean"].mean())
    for atk in ATTACKS:
        l2, acc = curve(**per_attack[atk])
        m[f"acc_{atk}_max_{tag}"] = float(100.0 * per_attack[atk]["correct"][-1].mean())
        m[f"l2_{atk}_max_{tag}"] = float(np.nanmax(l2))
        rise, rise_hi = max_rise(per_attack[atk], cfg.n_boot)
        m[f"rise_{atk}_{tag}"], m[f"rise_{atk}_{tag}_hi"] = rise, rise_hi
        # the baseline "actually drops": paired accuracy loss from clean to the largest budget
        d, lo, hi = paired_diff(per_attack[atk]["clean"], per_attack[atk]["correct"][-1])
        m[f"drop_{atk}_{tag}"], m[f"drop_{atk}_{tag}_lo"] = d, lo


def _table_curves(ctx, title, series, cfg):
    budgets = {"fgsm": cfg.fgsm_eps, "bim": cfg.bim_eps, "cw": cfg.cw_eps}
    rows = []
    for label, per_attack in series:
        for atk in ATTACKS:
            pa = per_attack[atk]
            tp = pa["clean"].astype(bool)
            cells = [f"{100 * c.mean():.1f} @ {r[tp].mean():.3f}" for c, r in zip(pa["correct"], pa["ratio"])]
            rows.append([label, LABEL[atk], f"{100 * pa['clean'].mean():.1f}"] + cells
                        + [""] * (6 - len(cells)))
    eps_note = "; ".join(f"{LABEL[a]} eps = {', '.join(f'{e:g}' for e in budgets[a])}" for a in ATTACKS)
    ctx.table(title, ["model", "attack", "clean"] + [f"budget {i + 1}" for i in range(6)], rows,
              note=f"each cell: top-1 % @ normalised L2 (Eq 6.1). Budgets in order: {eps_note} "
                   f"(FGSM / BIM step in 0-255 units, C&W a factor on delta).")


# --------------------------------------------------------------------------------------------------
# Fig 6.3
# --------------------------------------------------------------------------------------------------
def figure_6_3(cfg, ctx) -> dict:
    state = prepare(cfg, ctx)
    runs = _runs_6_3(state)
    s = ctx.seed
    per = {name: {atk: runs[name][atk][name] for atk in ATTACKS} for name in runs}
    m: dict = {}
    for name, pa in per.items():
        _curve_metrics(m, slug(name), pa, cfg)
    for r in ROLES:
        for atk in ATTACKS:   # StSNet vs its baseline, matched Lbar_2
            _gap_metrics(m, f"gap_{atk}_{slug(_st(r))}_vs_f{r}", per[_st(r)][atk], per[f"f_{r}"][atk], cfg, s)
            _gap_metrics(m, f"gap_{atk}_{slug(_st(r))}_vs_fR_AS", per[_st(r)][atk], per["f_R o A_S"][atk], cfg, s)
        d, lo, hi = paired_diff(per[_st(r)]["fgsm"]["clean"], per[f"f_{r}"]["fgsm"]["clean"])
        m[f"clean_cost_{r}"], m[f"clean_cost_{r}_lo"], m[f"clean_cost_{r}_hi"] = d, lo, hi
    for atk in ATTACKS:
        _gap_metrics(m, f"gap_{atk}_fR_AS_vs_fR", per["f_R o A_S"][atk], per["f_R"][atk], cfg, s)
        _gap_metrics(m, f"gap_{atk}_fI_vs_fR", per["f_I"][atk], per["f_R"][atk], cfg, s)
        _gap_metrics(m, f"gap_{atk}_fI_AI_vs_fR_AR", per[_st("I")][atk], per[_st("R")][atk], cfg, s)
    for name, pa in per.items():   # iterative attacks vs FGSM, same model, matched Lbar_2
        for atk in ("bim", "cw"):
            _gap_metrics(m, f"gap_{atk}_vs_fgsm_{slug(name)}", pa[atk], pa["fgsm"], cfg, s)
    styles = {"f_R": dict(color="C0", ls="--"), "f_I": dict(color="C1", ls="--"), _st("R"): dict(color="C0"),
              _st("I"): dict(color="C1"), "f_R o A_S": dict(color="C0", alpha=0.4)}
    names = {"f_R": f"f_R ({cfg.role_R})", "f_I": f"f_I ({cfg.role_I})"}
    series = [(names.get(n, n), per[n], styles[n]) for n in ("f_R", "f_I", _st("R"), _st("I"), "f_R o A_S")]
    _plot_curves(ctx, "fig6_3", "Fig 6.3: white-box FGSM / BIM / C&W, accuracy vs normalised L2: baselines dashed, "
                 "StSNets solid, f_R o A_S light", series, cfg)
    _table_curves(ctx, "Fig 6.3 as numbers", [(lbl, pa) for lbl, pa, _ in series], cfg)
    ctx.note(f"{len(state.y)} test images; f_R = {cfg.role_R}, f_I = {cfg.role_I} (capacity's classifiers); "
             f"gradients through the autoencoder with the '{cfg.ae_backend}' backend.")
    return m


# --------------------------------------------------------------------------------------------------
# Fig 6.4: attack on the StSNet, fed straight to the classifier
# --------------------------------------------------------------------------------------------------
def figure_6_4(cfg, ctx) -> dict:
    state = prepare(cfg, ctx)
    m: dict = {}
    series = []
    for k, r in enumerate(ROLES):
        run = attack_run(state, _st(r), [_st(r), f"f_{r}"])
        direct = {atk: run[atk][f"f_{r}"] for atk in ATTACKS}
        regular = {atk: run[atk][_st(r)] for atk in ATTACKS}
        tag = f"f{r}_from_{slug(_st(r))}"
        _curve_metrics(m, tag, direct, cfg)
        for atk in ATTACKS:
            _gap_metrics(m, f"gap_{atk}_{tag}_vs_{slug(_st(r))}", direct[atk], regular[atk], cfg, ctx.seed)
        series += [(f"{_st(r)} (regular)", regular, dict(color=f"C{k}", alpha=0.4)),
                   (f"f_{r} fed the StSNet's attack", direct, dict(color=f"C{k}"))]
    _plot_curves(ctx, "fig6_4", "Fig 6.4: perturbations computed on the StSNet, fed directly to the classifier "
                 "(light: the regular StSNet setting of Fig 6.3)", series, cfg)
    _table_curves(ctx, "Fig 6.4 as numbers", [(lbl, pa) for lbl, pa, _ in series], cfg)
    return m


# --------------------------------------------------------------------------------------------------
# Fig 6.5: gradients of the classifier at A(x), evaluated on the whole ensemble (BPDA-style)
# --------------------------------------------------------------------------------------------------
def figure_6_5(cfg, ctx) -> dict:
    state = prepare(cfg, ctx)
    m: dict = {}
    series = []
    for k, r in enumerate(ROLES):
        base = attack_run(state, f"f_{r}", [f"f_{r}"])
        st = attack_run(state, _st(r), [_st(r), f"f_{r}"])
        bp = attack_run(state, f"BPDA {_st(r)}", [_st(r)])
        pf = {atk: base[atk][f"f_{r}"] for atk in ATTACKS}
        ps = {atk: st[atk][_st(r)] for atk in ATTACKS}
        pb = {atk: bp[atk][_st(r)] for atk in ATTACKS}
        tag = slug(f"BPDA {_st(r)}")
        _curve_metrics(m, tag, pb, cfg)
        for atk in ATTACKS:
            _gap_metrics(m, f"gap_{atk}_{tag}_vs_f{r}", pb[atk], pf[atk], cfg, ctx.seed)
            _gap_metrics(m, f"gap_{atk}_{slug(_st(r))}_vs_{tag}", ps[atk], pb[atk], cfg, ctx.seed)
        series += [(f"f_{r}", pf, dict(color=f"C{k}", ls="--")), (f"{_st(r)} (regular)", ps, dict(color=f"C{k}", alpha=0.4)),
                   (f"{_st(r)}, classifier's gradient at A(x)", pb, dict(color=f"C{k}", ls="-."))]
    _plot_curves(ctx, "fig6_5", "Fig 6.5: perturbations from the classifier's gradient taken at the reconstruction "
                 "A(x) (autoencoder's backward skipped, BPDA-style), evaluated on the whole StSNet", series, cfg)
    _table_curves(ctx, "Fig 6.5 as numbers", [(lbl, pa) for lbl, pa, _ in series], cfg)
    ctx.note("Fig 6.5 going against Athalye et al.'s rule (a model's own gradients should be the strongest "
             "attack) is set aside by the thesis (footnote 4, L1503); the BPDA setting here is the closest the "
             "chapter comes to an adaptive attack (see adversarial.adaptive for one).")
    return m


# --------------------------------------------------------------------------------------------------
# Tab 6.1 and Fig 6.6: structural similarity of input-gradient magnitudes
# --------------------------------------------------------------------------------------------------
GRAD_MODELS = ("f_R", "f_R o A_R", "f_R o A_S", "A_R", "A_S")


def gradient_maps(state, n: int):
    """|d loss / d x| per model of GRAD_MODELS for the first n test images, channels reduced by the
    max over colour channels, each map divided by its own max (SSIM needs a common data range).
    Classifier models: cross-entropy against the true label; autoencoders alone: their MSE
    reconstruction loss with the clean image as a constant target. Returns {name: (n, H, W)}."""
    import torch
    import torch.nn.functional as F
    x, y = state.x[:n], state.y[:n]
    out = {}
    for name in GRAD_MODELS:
        xi = x.detach().clone().requires_grad_(True)
        if name.startswith("A_"):
            loss = F.mse_loss(state.ensemble.autoencoders[name](xi), x.detach(), reduction="sum")
        else:
            loss = F.cross_entropy(state.ensemble.models[name](xi), y, reduction="sum")
        g = torch.autograd.grad(loss, xi)[0].abs().amax(1)                 # (n, H, W)
        g = g / g.flatten(1).amax(1).clamp_min(1e-30)[:, None, None]
        out[name] = g.cpu().numpy().astype(np.float64)
    return out


def ssim_matrix(maps: dict, win: int):
    """Per image SSIM (skimage, sliding window ``win``, data range 1) for every pair: {(a, b): (n,)}."""
    from skimage.metrics import structural_similarity
    names = list(maps)
    n = len(next(iter(maps.values())))
    out = {}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            out[(a, b)] = np.array([structural_similarity(maps[a][k], maps[b][k], win_size=win, data_range=1.0)
                                    for k in range(n)])
    return out


def table_6_1(cfg, ctx) -> dict:
    state = prepare(cfg, ctx)
    n = min(cfg.n_ssim, len(state.y))
    maps = gradient_maps(state, n)
    pairs = ssim_matrix(maps, cfg.ssim_win)
    m: dict = {}
    names = list(GRAD_MODELS)
    rows = []
    for i, a in enumerate(names):
        row = [a] + ["-"] * i + ["1.00"]
        for b in names[i + 1:]:
            v = float(pairs[(a, b)].mean())
            m[f"ssim_{slug(a)}__{slug(b)}"] = v
            row.append(f"{v:.2f}")
        rows.append(row)
    ctx.table("Tab 6.1: pairwise mean SSIM of input-gradient magnitudes", ["SSIM"] + names, rows,
              note=f"{n} test images; |gradient| reduced over colour channels by the max, each map scaled to "
                   f"[0, 1] by its own max; skimage SSIM, {cfg.ssim_win}x{cfg.ssim_win} window, data range 1. "
                   f"f_R = {cfg.role_R}.")
    fr = [k for k in pairs if "f_R" in k]                                    # pairs with the classifier alone
    ae = [k for k in pairs if "f_R" not in k]                                # pairs among AE-based gradients
    # the claim: every SSIM(f_R, .) below every SSIM among AE-based gradients; statistic = the smallest
    # AE-pair mean minus the largest f_R-pair mean, bootstrapped over images (both recomputed per resample)
    stack_fr, stack_ae = np.stack([pairs[k] for k in fr]), np.stack([pairs[k] for k in ae])
    point = float(stack_ae.mean(1).min() - stack_fr.mean(1).max())
    rng = np.random.default_rng(ctx.seed)
    boots = []
    for _ in range(cfg.n_boot):
        idx = rng.integers(0, n, n)
        boots.append(stack_ae[:, idx].mean(1).min() - stack_fr[:, idx].mean(1).max())
    m["ssim_sep"], m["ssim_sep_lo"], m["ssim_sep_hi"] = point, float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))
    m["ssim_fR_max"] = float(stack_fr.mean(1).max())
    m["ssim_ae_min"] = float(stack_ae.mean(1).min())
    _figure_6_6(ctx, state, maps, pairs)
    return m


def _figure_6_6(ctx, state, maps, pairs):
    from common.plotting import plt
    names = list(maps)
    fig, axes = plt.subplots(1, len(names) + 1, figsize=(2.2 * (len(names) + 1), 2.6))
    img = state.x[0].detach().cpu().permute(1, 2, 0).numpy()
    axes[0].imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray")
    axes[0].set_title("input", fontsize=8)
    for ax, nm in zip(axes[1:], names):
        ax.imshow(maps[nm][0], cmap="inferno")
        s = pairs.get(("f_R", nm))
        ax.set_title(nm + (f"\nSSIM vs f_R {s[0]:.2f}" if s is not None else ""), fontsize=8)
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    ctx.savefig(fig, "fig6_6", "Fig 6.6: input-gradient magnitudes of one test image for each model (brighter = larger)")


# --------------------------------------------------------------------------------------------------
# Beyond the thesis: adaptive attacks
# --------------------------------------------------------------------------------------------------
ADAPTIVE_MODELS = ("f_R", "f_R o A_R", "f_I", "f_I o A_I")      # the StSNets and their baselines


def adaptive(cfg, ctx) -> dict:
    """AutoAttack (torchattacks, standard) and PGD with random restarts through the whole ensemble
    (the autoencoder's backward included), at the data's conventional budgets; robust accuracy with
    its Wilson interval. Cached per model in a work folder."""
    import json
    from adversarial import attacks as A
    from common.claims import binomial_ci
    state = prepare(cfg, ctx)
    n = min(cfg.n_adaptive, len(state.y))
    x, y = state.x[:n], state.y[:n]
    budgets = [("Linf", cfg.adaptive_linf)] + ([("L2", cfg.adaptive_l2)] if cfg.adaptive_l2 > 0 else [])
    n_classes = cfg.capacity.n_classes
    if n_classes < 4:   # APGD-T's targeted DLR loss reads the 3rd and 4th largest logits
        from common.config import ConfigError
        raise ConfigError(f"adaptive: torchattacks' AutoAttack needs at least 4 classes (capacity.n_classes = {n_classes})")
    m: dict = {}
    rows = []
    for name in ADAPTIVE_MODELS:
        model = state.ensemble.models[name]
        wd = ctx.work_dir(f"adversarial-adaptive-{slug(name)}", {"adversarial": cfg, "model": name},
                          depends_on=state.model_dirs, datasets=[state.data_desc])
        f = wd / "adaptive.json"
        if f.exists():
            res = json.loads(f.read_text())
        else:
            res = {"clean": int((A.predict(model, x) == y).sum())}
            for norm, eps in budgets:
                adv = A.autoattack(model, x, y, norm, eps, cfg.autoattack_version, n_classes, seed=ctx.seed,
                                   steps=cfg.autoattack_steps, square_queries=cfg.autoattack_queries)
                adv = adv.detach()
                assert float(adv.min()) >= 0 and float(adv.max()) <= 1
                res[f"aa_{norm}"] = int((A.predict(model, adv) == y).sum())
                _, ok = A.pgd_restarts(model, x, y, norm, eps, cfg.pgd_steps, cfg.pgd_restarts, seed=ctx.seed)
                res[f"pgd_{norm}"] = int(ok.sum())
            f.write_text(json.dumps(res))
        sl = slug(name)
        row = [name, _pct(res["clean"], n)]
        m[f"clean_{sl}"] = 100.0 * res["clean"] / n
        for norm, eps in budgets:
            for a in ("aa", "pgd"):
                k = res[f"{a}_{norm}"]
                lo, hi = binomial_ci(k, n)
                m[f"{a}_{norm}_{sl}"], m[f"{a}_{norm}_{sl}_lo"], m[f"{a}_{norm}_{sl}_hi"] = 100.0 * k / n, 100 * lo, 100 * hi
                row.append(f"{100.0 * k / n:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]")
        rows.append(row)
    heads = ["model", "clean"]
    for norm, eps in budgets:
        heads += [f"AutoAttack {norm} {eps:g}", f"PGD x{cfg.pgd_restarts} {norm} {eps:g}"]
    ctx.table("Adaptive attacks: robust accuracy % [95% Wilson interval]", heads, rows,
              note=f"{n} test images; AutoAttack ({cfg.autoattack_version}, torchattacks 3.5.1 as built by it: "
                   f"{cfg.autoattack_steps or 10} APGD / APGD-T / FAB iterations, {cfg.autoattack_queries or 5000} "
                   f"Square queries; the original AutoAttack runs 100 iterations) and PGD "
                   f"({cfg.pgd_steps} steps, step 2.5 eps / steps, {cfg.pgd_restarts} random restarts), gradients "
                   f"through the whole ensemble (autoencoder included). Not in the thesis.")
    return m


def _pct(k, n):
    return f"{100.0 * k / n:.1f}"
