"""One function per table / figure of chapter 6 (``fn(cfg, ctx) -> metrics`` for one training seed).

Roles: the thesis' f_R (ResNet50) and f_I (Inception-v3) are cfg.role_R / cfg.role_I of capacity's
classifiers (default: the digit ResNet "residual" and the wide shallow net "wide"; paper: resnet50,
inception_v3). Metric keys use slugs: fR, fI, fR_AR (StSNet f_R o A_R), fI_AI, fR_AS (f_R o A_S),
bpda_fR_AR (Fig 6.5), fR_from_fR_AR (Fig 6.4: attack on the StSNet, evaluated on f_R).
"""
from __future__ import annotations

import numpy as np

from adversarial.curves import curve, gaps_at_budgets, matched_gap, matched_gap_difference, max_rise, paired_diff
from adversarial.pipeline import attack_label, attack_names, attack_run, prepare, slug

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
    names = attack_names(cfg)
    fig, axes = plt.subplots(1, len(names), figsize=(4.3 * len(names), 3.8), squeeze=False)
    axes = axes[0]
    for ax, atk in zip(axes, names):
        for label, per_attack, style in series:
            l2, acc = curve(**per_attack[atk])
            ax.plot(l2, acc, marker="o", ms=3, label=label, **style)
        ax.set_title(attack_label(cfg, atk))
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
    first = next(iter(per_attack.values()))
    m[f"clean_{tag}"] = 100.0 * float(first["clean"].mean())
    for atk in per_attack:
        l2, acc = curve(**per_attack[atk])
        m[f"acc_{atk}_max_{tag}"] = float(100.0 * per_attack[atk]["correct"][-1].mean())
        m[f"l2_{atk}_max_{tag}"] = float(np.nanmax(l2))
        rise, rise_hi = max_rise(per_attack[atk], cfg.n_boot)
        m[f"rise_{atk}_{tag}"], m[f"rise_{atk}_{tag}_hi"] = rise, rise_hi
        # the baseline "actually drops": paired accuracy loss from clean to the largest budget
        d, lo, hi = paired_diff(per_attack[atk]["clean"], per_attack[atk]["correct"][-1])
        m[f"drop_{atk}_{tag}"], m[f"drop_{atk}_{tag}_lo"] = d, lo


def _table_curves(ctx, title, series, cfg):
    names = attack_names(cfg)
    budgets = {a: getattr(cfg.attacks, a).eps for a in names}
    width = max(len(b) for b in budgets.values())
    rows = []
    for label, per_attack in series:
        for atk in names:
            pa = per_attack[atk]
            tp = pa["clean"].astype(bool)
            cells = [f"{100 * c.mean():.1f} @ {r[tp].mean():.3f}" for c, r in zip(pa["correct"], pa["ratio"])]
            rows.append([label, attack_label(cfg, atk), f"{100 * pa['clean'].mean():.1f}"] + cells
                        + [""] * (width - len(cells)))
    from adversarial.attacks import attack_fn
    eps_note = "; ".join(f"{attack_label(cfg, a)} eps = {', '.join(f'{e:g}' for e in budgets[a])} "
                         f"({attack_fn(getattr(cfg.attacks, a)).budget})" for a in names)
    ctx.table(title, ["model", "attack", "clean"] + [f"budget {i + 1}" for i in range(width)], rows,
              note=f"each cell: top-1 % @ normalised L2 (Eq 6.1). Budgets in order: {eps_note}.")


# --------------------------------------------------------------------------------------------------
# Fig 6.3
# --------------------------------------------------------------------------------------------------
def _iterative(cfg, atk):
    from adversarial.attacks import attack_fn
    return attack_fn(getattr(cfg.attacks, atk)).iterative


def figure_6_3(cfg, ctx) -> dict:
    state = prepare(cfg, ctx)
    runs = _runs_6_3(state)
    s = ctx.seed
    names = attack_names(cfg)
    per = {name: {atk: runs[name][atk][name] for atk in names} for name in runs}
    m: dict = {}
    for name, pa in per.items():
        _curve_metrics(m, slug(name), pa, cfg)
    for r in ROLES:
        for atk in names:   # StSNet vs its baseline, matched Lbar_2: mean over the grid and at each budget
            _gap_metrics(m, f"gap_{atk}_{slug(_st(r))}_vs_f{r}", per[_st(r)][atk], per[f"f_{r}"][atk], cfg, s)
            g, lo, hi = gaps_at_budgets(per[_st(r)][atk], per[f"f_{r}"][atk], cfg.n_boot, s)
            for j in range(len(g)):
                key = f"gapb_{atk}_{slug(_st(r))}_vs_f{r}_{j + 1}"
                m[key], m[key + "_lo"], m[key + "_hi"] = float(g[j]), float(lo[j]), float(hi[j])
            _gap_metrics(m, f"gap_{atk}_{slug(_st(r))}_vs_fR_AS", per[_st(r)][atk], per["f_R o A_S"][atk], cfg, s)
        d, lo, hi = paired_diff(per[_st(r)]["fgsm"]["clean"], per[f"f_{r}"]["fgsm"]["clean"])
        m[f"clean_cost_{r}"], m[f"clean_cost_{r}_lo"], m[f"clean_cost_{r}_hi"] = d, lo, hi
    for atk in names:
        _gap_metrics(m, f"gap_{atk}_fR_AS_vs_fR", per["f_R o A_S"][atk], per["f_R"][atk], cfg, s)
        _gap_metrics(m, f"gap_{atk}_fI_vs_fR", per["f_I"][atk], per["f_R"][atk], cfg, s)
        _gap_metrics(m, f"gap_{atk}_fI_AI_vs_fR_AR", per[_st("I")][atk], per[_st("R")][atk], cfg, s)
        # does the autoencoder widen the Inception-ResNet gap? (the difference of the two gaps, jointly resampled)
        w = matched_gap_difference((per[_st("I")][atk], per[_st("R")][atk]), (per["f_I"][atk], per["f_R"][atk]),
                                   cfg.n_grid, cfg.n_boot, s)
        m[f"widen_{atk}_fI_vs_fR"], m[f"widen_{atk}_fI_vs_fR_lo"], m[f"widen_{atk}_fI_vs_fR_hi"] = w
    single = [a for a in names if not _iterative(cfg, a)]
    for name, pa in per.items():   # iterative attacks vs single-step ones, same model, matched Lbar_2
        for atk in names:
            for one in single:
                if _iterative(cfg, atk):
                    _gap_metrics(m, f"gap_{atk}_vs_{one}_{slug(name)}", pa[atk], pa[one], cfg, s)
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
        direct = {atk: run[atk][f"f_{r}"] for atk in run}
        regular = {atk: run[atk][_st(r)] for atk in run}
        tag = f"f{r}_from_{slug(_st(r))}"
        _curve_metrics(m, tag, direct, cfg)
        for atk in run:
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
        pf = {atk: base[atk][f"f_{r}"] for atk in base}
        ps = {atk: st[atk][_st(r)] for atk in st}
        pb = {atk: bp[atk][_st(r)] for atk in bp}
        tag = slug(f"BPDA {_st(r)}")
        _curve_metrics(m, tag, pb, cfg)
        for atk in pb:
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
    # "gradients from fine-tuned autoencoders are even more similar to those produced by regular
    # autoencoders" (L1544): SSIM(f_R o A_R, plain AE) for the less similar of A_R, A_S, minus
    # SSIM(f_R o A_R, f_R), bootstrapped over images
    to_ae = np.stack([pairs[("f_R o A_R", a)] for a in ("A_R", "A_S")])
    to_f = pairs[("f_R", "f_R o A_R")]
    closer = [float(to_ae.mean(1).min() - to_f.mean())]
    rng = np.random.default_rng(ctx.seed + 1)
    for _ in range(cfg.n_boot):
        idx = rng.integers(0, n, n)
        closer.append(float(to_ae[:, idx].mean(1).min() - to_f[idx].mean()))
    m["ssim_closer"] = closer[0]
    m["ssim_closer_lo"], m["ssim_closer_hi"] = (float(np.quantile(closer[1:], q)) for q in (0.025, 0.975))
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
# Beyond the thesis: the adaptive curve (adversarial/adaptive.py)
# --------------------------------------------------------------------------------------------------
ADAPTIVE_MODELS = ("f_R", "f_R o A_S", "f_R o A_R", "f_I", "f_I o A_S", "f_I o A_I")
ADAPTIVE_ATTACKS = ("apgd_ce1", "apgd_ce", "apgd_dlr", "autoattack", "pgd", "worst")
AD_LABEL = {"apgd_ce1": "APGD-CE (1 restart)", "apgd_ce": "APGD-CE", "apgd_dlr": "APGD-DLR",
            "autoattack": "AutoAttack std", "pgd": "PGD", "worst": "worst of all"}


def _adaptive_stage(state, name, x, y, budgets):
    """Every adaptive attack on model ``name`` at every budget and norm, and the obfuscation checks:
    {key: bool (n,)} cached in one work folder per model."""
    import json
    from adversarial import adaptive as AD
    cfg, ctx = state.cfg, state.ctx
    keys = ("n_adaptive", "adaptive_norms", "l2_budgets", "autoattack_budgets", "adaptive_steps", "adaptive_restarts", "square_queries", "pgd_steps",
            "pgd_restarts", "check_eps", "check_square_queries", "n_eval", "ae_backend", "fold_bn", "role_R", "role_I")
    wd = ctx.work_dir(f"adversarial-adaptive-{slug(name)}",
                      {"capacity": cfg.capacity, **{k: getattr(cfg, k) for k in keys}, "budgets": budgets, "model": name},
                      depends_on=state.model_dirs, datasets=[state.data_desc])
    f = wd / "adaptive.npz"
    if f.exists():
        with np.load(f, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    model = state.ensemble.models[name]
    n_classes = cfg.capacity.n_classes
    shape = tuple(x.shape[1:])
    out = {}
    from common.progress import progress
    todo = [(norm, b) for norm in cfg.adaptive_norms for b in _norm_budgets(cfg, norm, budgets)]
    aa_at = set(budgets if cfg.autoattack_budgets == "all" else [cfg.check_eps] if cfg.autoattack_budgets == "check"
                else AD.linf_budgets(cfg, iterative_only=True))
    for norm, b in progress(todo, desc=f"adaptive on {name}", enabled=cfg.progress, leave=False):
        eps = b / 255.0 if norm == "Linf" else AD.l2_radius(b, shape)
        res = AD.adaptive_at(model, x, y, norm, eps, n_classes, cfg.adaptive_steps, cfg.adaptive_restarts,
                             cfg.square_queries, cfg.pgd_steps, cfg.pgd_restarts, seed=ctx.seed,
                             autoattack=b in aa_at)
        for k, v in res.items():
            out[f"{norm}|{b:g}|{k}"] = v.cpu().numpy()
    ce = lambda eps: AD.apgd_ce_images(model, x, y, eps, cfg.adaptive_steps, ctx.seed)   # noqa: E731
    out["unbounded"] = (A_predict(model, ce(1.0)) == y).cpu().numpy()          # any image is reachable
    out["check_apgd_ce"] = (A_predict(model, ce(cfg.check_eps / 255.0)) == y).cpu().numpy()
    out["check_square"] = AD.square_alone(model, x, y, cfg.check_eps / 255.0, cfg.check_square_queries,
                                          ctx.seed).cpu().numpy()
    if " o " in name:   # transfer: the undefended classifier's APGD-CE images, fed to the defended model
        base = state.ensemble.models[name.split(" o ")[0]]
        adv = AD.apgd_ce_images(base, x, y, cfg.check_eps / 255.0, cfg.adaptive_steps, ctx.seed)
        out["check_transfer"] = (A_predict(model, adv) == y).cpu().numpy()
    tmp = wd / "adaptive.tmp.npz"
    np.savez(tmp, **out)
    tmp.replace(f)
    (wd / "done.json").write_text(json.dumps({"model": name, "budgets": budgets}))
    return out


def _norm_budgets(cfg, norm, budgets):
    """The L_inf radii run under ``norm``: all of them for L_inf, ``cfg.l2_budgets``' for L2."""
    from adversarial.adaptive import linf_budgets
    if norm == "Linf" or cfg.l2_budgets == "all":
        return budgets
    return linf_budgets(cfg, iterative_only=True)


def _acc(r_, norm, b, atk):
    """Accuracy % of attack ``atk`` at budget ``b`` (nan where it did not run there)."""
    k = f"{norm}|{b:g}|{atk}"
    return 100.0 * float(r_[k].mean()) if k in r_ else float("nan")


def A_predict(model, x):
    from adversarial.attacks import predict
    return predict(model, x)


def adaptive(cfg, ctx) -> dict:
    """Robust accuracy over the thesis' budgets under adaptive attacks (APGD-CE / -DLR, AutoAttack
    standard, PGD with restarts) for f_i, f_i o A_S and f_i o A_i; the thesis' BIM / FGSM on the same
    images beside them; Athalye et al.'s obfuscation checks. Metrics: accuracy % per (norm, attack,
    model, budget index), the paired comparisons the claims read."""
    from adversarial.adaptive import linf_budgets
    from adversarial.curves import max_rise
    state = prepare(cfg, ctx)
    n = min(cfg.n_adaptive, len(state.y))
    x, y = state.x[:n], state.y[:n]
    budgets = linf_budgets(cfg)
    if not budgets:
        from common.config import ConfigError
        raise ConfigError("adaptive: no attack of cfg.attacks bounds an L_inf ball (FGSM / BIM give the budgets)")
    if cfg.capacity.n_classes < 4:   # APGD-T / DLR read the 3rd largest logit
        from common.config import ConfigError
        raise ConfigError(f"adaptive: APGD-DLR and AutoAttack need at least 4 classes (capacity.n_classes = "
                          f"{cfg.capacity.n_classes})")
    res = {name: _adaptive_stage(state, name, x, y, budgets) for name in ADAPTIVE_MODELS}
    # the thesis' attacks on the same (first n) images: Fig 6.3's cached runs
    thesis = {}
    for r in ROLES:
        thesis[f"f_{r}"] = attack_run(state, f"f_{r}", [f"f_{r}"])
        thesis[_st(r)] = attack_run(state, _st(r), [_st(r), f"f_{r}"])
    thesis["f_R o A_S"] = attack_run(state, "f_R o A_S", ["f_R o A_S"])
    from adversarial.attacks import attack_fn
    from adversarial.config import attack_items
    linf_of = {}   # (attack, j) -> its L_inf radius, for the attacks that bound one
    for a, st in attack_items(cfg.attacks):
        fn = attack_fn(st)
        if fn.linf_radii is not None:
            for j, rad in enumerate(fn.linf_radii(st)):
                linf_of[(a, j)] = round(float(rad), 6)
    s = ctx.seed
    m: dict = {}
    for name, r_ in res.items():
        tag = slug(name)
        m[f"ad_clean_{tag}"] = _acc(r_, cfg.adaptive_norms[0], budgets[0], "clean")
        for norm in cfg.adaptive_norms:
            nb = _norm_budgets(cfg, norm, budgets)
            for atk in ADAPTIVE_ATTACKS:
                for k, b in enumerate(budgets):
                    m[f"ad_{norm}_{atk}_{tag}_{k + 1}"] = _acc(r_, norm, b, atk)
            # accuracy non-increasing in the budget (APGD-CE, each budget attacked independently)
            run = {"clean": r_[f"{norm}|{nb[0]:g}|clean"],
                   "correct": np.stack([r_[f"{norm}|{b:g}|apgd_ce"] for b in nb])}
            m[f"ad_rise_{norm}_{tag}"], m[f"ad_rise_{norm}_{tag}_hi"] = max_rise(run, cfg.n_boot, s)
            # what AutoAttack's later stages (APGD-T, FAB-T, Square) find beyond APGD-CE's first restart
            extra = [paired_diff(r_[f"{norm}|{b:g}|apgd_ce1"], r_[f"{norm}|{b:g}|autoattack"], cfg.n_boot, s)
                     for b in nb if f"{norm}|{b:g}|autoattack" in r_]
            worst = max(range(len(extra)), key=lambda i: extra[i][2]) if extra else None
            m[f"ad_aa_extra_{norm}_{tag}"], m[f"ad_aa_extra_{norm}_{tag}_hi"] = (
                (extra[worst][0], extra[worst][2]) if extra else (float("nan"), float("nan")))
        m[f"ad_unbounded_{tag}"] = 100.0 * float(r_["unbounded"].mean())
        for ref in ("square", "transfer"):
            if f"check_{ref}" in r_:
                d = paired_diff(r_["check_apgd_ce"], r_[f"check_{ref}"], cfg.n_boot, s)
                m[f"ad_wb_vs_{ref}_{tag}"], m[f"ad_wb_vs_{ref}_{tag}_lo"], m[f"ad_wb_vs_{ref}_{tag}_hi"] = d
        if name in thesis:   # iterative (APGD-CE) at least as strong as single-step at each single-step budget
            for (a, j), rad in linf_of.items():
                if not attack_fn(getattr(cfg.attacks, a)).iterative:
                    single = thesis[name][a][name]["correct"][j, :n]
                    d = paired_diff(r_[f"Linf|{rad:g}|apgd_ce"], single, cfg.n_boot, s)
                    key = f"ad_iter_vs_{a}_{tag}_{j + 1}"
                    m[key], m[key + "_lo"], m[key + "_hi"] = d
    # the claim: the StSNet's advantage under BIM survives an adaptive attack (per BIM budget, paired)
    for r in ROLES:
        for (a, j), rad in linf_of.items():
            if not attack_fn(getattr(cfg.attacks, a)).iterative or "Linf" not in cfg.adaptive_norms:
                continue
            st_b, f_b = thesis[_st(r)][a][_st(r)]["correct"][j, :n], thesis[f"f_{r}"][a][f"f_{r}"]["correct"][j, :n]
            st_a, f_a = res[_st(r)][f"Linf|{rad:g}|worst"], res[f"f_{r}"][f"Linf|{rad:g}|worst"]
            for key, (p, q) in ((f"adv_{a}_{r}_{j + 1}", (st_b, f_b)), (f"adv_adaptive_{a}_{r}_{j + 1}", (st_a, f_a))):
                d = 100.0 * (p.astype(float) - q.astype(float))
                from common.claims import bootstrap_ci
                lo, hi = bootstrap_ci(d, n_boot=cfg.n_boot, seed=s)
                m[key], m[key + "_lo"], m[key + "_hi"] = float(d.mean()), lo, hi
    _adaptive_tables(ctx, cfg, res, thesis, budgets, linf_of, n, x.shape[1:])
    _adaptive_figure(ctx, cfg, res, thesis, budgets, linf_of, n)
    return m


def _adaptive_tables(ctx, cfg, res, thesis, budgets, linf_of, n, shape):
    from adversarial.adaptive import l2_radius
    for norm in cfg.adaptive_norms:
        rows = []
        for name in ADAPTIVE_MODELS:
            r_ = res[name]
            nb = _norm_budgets(cfg, norm, budgets)
            for atk in ADAPTIVE_ATTACKS:
                rows.append([name, AD_LABEL[atk], f"{_acc(r_, norm, nb[0], 'clean'):.1f}"]
                            + [_cell(_acc(r_, norm, b, atk)) for b in nb])
            if norm == "Linf" and name in thesis:   # the thesis' attacks at the radii they reach
                for a in dict.fromkeys(a for a, _ in linf_of):
                    cells = []
                    for b in nb:
                        js = [j for (a2, j), rad in linf_of.items() if a2 == a and rad == round(b, 6)]
                        cells.append(f"{100 * thesis[name][a][name]['correct'][js[0], :n].mean():.1f}" if js else "")
                    rows.append([name, f"{attack_label(cfg, a)} (thesis)", ""] + cells)
        heads = ["model", "attack", "clean"] + [
            (f"{b:g}" if norm == "Linf" else f"{l2_radius(b, shape):.2f}") for b in _norm_budgets(cfg, norm, budgets)]
        ctx.table(f"Adaptive curve, {norm}: robust accuracy % per budget", heads, rows,
                  note=(f"{n} test images (the first n of Fig 6.3's). Budgets: every L_inf radius of Fig 6.3's "
                        f"FGSM (eps) and BIM (steps x eps), in 0-255 units"
                        + ("" if norm == "Linf" else "; L2 radius eps/255 * sqrt(C*H*W), the smallest L2 ball "
                           "holding that L_inf ball")
                        + f". APGD-CE / -DLR: {cfg.adaptive_steps} iterations, {cfg.adaptive_restarts} restarts "
                        f"(later restarts on the survivors); AutoAttack standard = APGD-CE's first restart, then "
                        f"APGD-T and FAB-T (9 target classes, {cfg.adaptive_steps} iterations) and Square "
                        f"({cfg.square_queries} queries) on the survivors (torchattacks' classes with the "
                        f"published counts); PGD {cfg.pgd_steps} steps x {cfg.pgd_restarts} random restarts; "
                        f"'worst of all': robust to every one that ran. AutoAttack's later stages run at "
                        f"{cfg.autoattack_budgets} budgets ('iterative': BIM's radii; '-' elsewhere). Gradients "
                        f"through the whole ensemble. Not in the thesis."))


def _cell(v):
    return "-" if np.isnan(v) else f"{v:.1f}"


def _adaptive_figure(ctx, cfg, res, thesis, budgets, linf_of, n):
    from common.plotting import plt
    fig, axes = plt.subplots(1, len(ROLES), figsize=(6.2 * len(ROLES), 4.0), squeeze=False)
    bim = [a for a, _ in linf_of if attack_fn_iterative(cfg, a)]
    for ax, r in zip(axes[0], ROLES):
        for k, name in enumerate((f"f_{r}", f"f_{r} o A_S", _st(r))):
            r_ = res[name]
            acc = lambda atk: [_acc(r_, "Linf", b, atk) for b in budgets]   # noqa: E731
            ax.plot(budgets, acc("worst"), color=f"C{k}", marker="o", ms=3, label=f"{name}: adaptive (worst)")
            ax.plot(budgets, acc("apgd_ce"), color=f"C{k}", ls=":", label=f"{name}: APGD-CE")
            if name in thesis:
                for a in dict.fromkeys(bim):
                    pts = sorted((rad, 100 * thesis[name][a][name]["correct"][j, :n].mean())
                                 for (a2, j), rad in linf_of.items() if a2 == a)
                    ax.plot(*zip(*pts), color=f"C{k}", ls="--", marker="s", ms=3,
                            label=f"{name}: {attack_label(cfg, a)} (thesis)")
        ax.set_xscale("log")
        ax.set_xlabel("L_inf budget (0-255 units)")
        ax.set_title(f"classifier f_{r} ({getattr(cfg, 'role_' + r)})")
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="best")
    axes[0][0].set_ylabel("robust top-1 accuracy (%)")
    fig.tight_layout()
    ctx.savefig(fig, "adaptive_curves", "Robustness curves: the thesis' BIM (dashed) beside APGD-CE (dotted) and "
                "the worst of the adaptive attacks (solid), per classifier, undefended / behind A_S / StSNet")


def attack_fn_iterative(cfg, a):
    return _iterative(cfg, a)
