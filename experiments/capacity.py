"""Thesis 000, chapter 5 (and app. A.2): effective capacity, "what do deep networks like to see".

One config for all capacity experiments (capacity.config.CapacityConfig): they share the trained
classifiers, A_S and the A_i (identical work-folder keys) and one cached evaluation pass. Science in
capacity/; other chapters reuse the trained models through capacity.models.trained_models.
"""
from __future__ import annotations

import dataclasses
import math

from capacity.config import PRESETS, CapacityConfig   # dataclasses only (no torch, no JAX)
from common.claims import ABSENT, Claim, Fixtures, interval_above, interval_metrics as iv
from common.registry import Experiment, register

S = "000 ch. 5"


# --- reported numbers, exactly as printed (Tab 5.1, 5.2, 5.3) -------------------------------------
_T51 = {"lenet": (32.30, 34.85, 54.63, 57.79), "alexnet": (54.96, 56.13, 77.98, 78.96),
        "vgg16": (71.35, 71.65, 90.50, 90.55), "resnet50": (74.02, 74.94, 92.01, 92.27),
        "inception_v3": (77.12, 76.71, 93.25, 93.03)}
REPORTED_51 = {}
for _n, (_a, _b, _c, _d) in _T51.items():
    REPORTED_51[f"top1_{_n}"] = _a
    REPORTED_51[f"top1_{_n}_ae"] = _b
    REPORTED_51[f"top5_{_n}"] = _c
    REPORTED_51[f"top5_{_n}_ae"] = _d
REPORTED_51["top5_lenet_diff"] = {"value": 3.61, "note": "misprint: the table's own numbers give +3.16"}
REPORTED_51["top1_lenet_ae"] = {"value": 34.85, "note": "Tab 5.2 prints 34.84 for the same cell"}
REPORTED_51["top1_vgg16_ae"] = {"value": 71.65, "note": "Tab 5.2 prints 71.63 for the same cell"}

ZOO = ("lenet", "alexnet", "vgg16", "resnet50", "inception_v3")
TAB_5_2 = ((34.84, 30.77, 4.16, 47.30, 43.52), (2.11, 56.13, 0.97, 9.25, 53.75), (29.29, 53.62, 71.63, 73.00, 74.00),
           (1.63, 49.72, 7.10, 74.94, 72.49), (18.29, 30.24, 45.55, 45.40, 76.71))   # rows A_i, columns f_j
TAB_5_3 = ((100.0, 88.30, 11.93, 135.75, 124.90), (6.06, 100.0, 1.74, 16.47, 95.75),
           (84.05, 95.53, 100.0, 102.82, 104.23), (4.67, 88.57, 9.99, 100.0, 96.74),
           (52.50, 53.87, 64.16, 60.59, 100.0))
REPORTED_52 = {f"acc_{j}_on_A_{i}": TAB_5_2[a][b] for a, i in enumerate(ZOO) for b, j in enumerate(ZOO)}
REPORTED_52.update({f"crmin_{j}_on_A_{i}": TAB_5_3[a][b] for a, i in enumerate(ZOO) for b, j in enumerate(ZOO)})
REPORTED_REC = {"mse_A_S_eval": {"value": 8.05e-4, "note": "A_S on ImageNet val (L1153); pixel scale not stated, "
                                                     "so not comparable; ours: digits in [0, 1]"},
                "mse_A_S_train": {"value": 7.77e-4, "note": "final training MSE over YFCC100m (L1153); ours: A_S "
                                                      "re-evaluated on its training digits after training"}}
REPORTED_56 = {"fca_concepts_t90": {"value": 6, "note": "counted from the thesis' Tab 5.3 at t = 90 (Fig 5.6)"}}


# --- claim checks ------------------------------------------------------------------------------
def _within_margin(m, cfg):
    """Two-sided and strict: every classifier's paired 95 % interval of top-1(f_i o A_i) - top-1(f_i)
    lies strictly inside (-margin, +margin). A gain beyond the margin fails as a loss does: the
    thesis' finding is that the composite stays close to f_i ("fluctuations are small", L1171)."""
    tol, parts, ok = cfg.margin, [], True
    for n in cfg.classifiers:
        d, lo, hi = m[f"top1_{n}_diff"], m[f"top1_{n}_diff_lo"], m[f"top1_{n}_diff_hi"]
        if any(math.isnan(v) for v in (lo, hi)):
            return None, f"f_{n}: no interval (empty evaluation set)"
        ok = ok and (-tol < lo and hi < tol)
        parts.append(f"{n} {d:+.2f} [{lo:+.2f}, {hi:+.2f}]")
    return ok, (f"top-1(f_i o A_i) - top-1(f_i), 95% paired bootstrap: {'; '.join(parts)} "
                f"(each interval strictly inside ±{tol:g})")


def _ic_highest(m, cfg=None):
    ok, detail = interval_above(m["ic_nmi_gap_lo"], 0.0, "95% bootstrap interval of IC-nMI(A_S) - IC-nMI(best A_i)",
                                "")
    return ok, f"IC-nMI A_S = {m['ic_nmi_A_S']:.3f} vs best fine-tuned {m['ic_nmi_best_ft']:.3f}; {detail}"


def _bc_ranking(m, cfg=None):
    from capacity.tables import BC_SUBSTANTIAL
    if "bc_rank_gap_lo" not in m:
        return None, "needs the autoencoders of alexnet, resnet50, vgg16 and inception_v3"
    lo, rel = m["bc_rank_gap_lo"], m["bc_rank_rel_gap"]
    if math.isnan(lo) or math.isnan(rel):
        return None, "no BC-nMI interval (empty evaluation set)"
    ok = lo > 0 and rel >= BC_SUBSTANTIAL
    return ok, (f"every pair {{A_A, A_R}} x {{A_V, A_I}}: paired 95% bootstrap interval of the BC-nMI gap above 0 "
                f"(worst lower end {lo:+.3f}) and the gap >= {100 * BC_SUBSTANTIAL:g} % of the lower one's BC-nMI "
                f"(worst {100 * rel:+.1f} %); each pair in the run's notes")


# --- the findings of Tab 5.1-5.3, Fig 5.4-5.6 (capacity/findings.py computes the numbers; every
# interval is a 95 % percentile bootstrap over the evaluation images, paired: one resample for every
# cell). Each check reads summary keys, so the sweep judges the same checks per bottleneck ratio ---
def _nan(*v):
    return any(isinstance(x, float) and math.isnan(x) for x in v)


def _t(cfg, field="finding_threshold"):
    return f"{getattr(cfg, field):g}" if cfg is not None else "t"


def _own_best(m, cfg=None):
    worst, k, n = m["own_margin_worst_lo"], m["own_columns_beyond_noise"], m["own_columns"]
    if _nan(worst):
        return None, "no interval of a column's margin (empty evaluation set)"
    return worst > 0, (f"acc(f_j o A_j) - max_i!=j acc(f_j o A_i): {k:g} of {n:g} columns with the interval above 0; "
                       f"worst lower end {worst:+.2f} (must be > 0 in every column)")


def _drastic(m, cfg=None):
    below, n = m["crmin_below_t_cells"], m["crmin_offdiag_cells"]
    if _nan(below, n) or n == 0:
        return None, "no off-diagonal CR_min interval"
    spread = f"; off-diagonal CR_min min {m['crmin_offdiag_min']:.1f}, median {m['crmin_offdiag_median']:.1f}, " \
             f"max {m['crmin_offdiag_max']:.1f}"
    return below >= n / 2, (f"{below:g} of {n:g} off-diagonal CR_min cells below t = {_t(cfg)} beyond noise (interval "
                            f"upper end < t; must be at least half, thesis 13 of 20){spread}")


def _asymmetric(m, cfg=None):
    k = m["crmin_asym_pairs"]
    if _nan(k):
        return None, "no CR_min intervals"
    return k >= 1, (f"{k:g} classifier pairs with CR_min(f_j o A_i) above t = {_t(cfg)} and CR_min(f_i o A_j) below "
                    f"it, both beyond noise (must be >= 1; thesis 7 of 10 by point estimate)")


def _above_100(m, cfg=None):
    k = m["crmin_above100_cells"]
    if _nan(k):
        return None, "no CR_min intervals"
    return k >= 1, (f"{k:g} off-diagonal CR_min cells with the interval above 100 (must be >= 1; thesis 4 of 20); "
                    f"largest point estimate {m['crmin_offdiag_max']:.1f}")


def _weakest_gain(m, cfg=None):
    rho, lo, hi = m["gain_acc_spearman"], m["gain_acc_spearman_lo"], m["gain_acc_spearman_hi"]
    if _nan(lo, hi):
        return None, "no interval of the rank correlation (a constant accuracy or gain)"
    return hi < 0, (f"Spearman(acc(f_i), acc(f_i o A_i) - acc(f_i)) = {rho:+.2f} [{lo:+.2f}, {hi:+.2f}] "
                    f"(upper end must be < 0; thesis' Tab 5.1: -0.90)")


def _mse_held_out(m, cfg=None):
    tol = cfg.mse_tolerance if cfg is not None else 0.10
    r, lo, hi = m["mse_A_S_ratio"], m["mse_A_S_ratio_lo"], m["mse_A_S_ratio_hi"]
    if _nan(lo, hi):
        return None, "no training-split MSE of A_S (pre-trained on another folder, or no extra nMI split)"
    return (1 - tol < lo and hi < 1 + tol), (f"MSE of A_S held-out / training = {r:.3f} [{lo:.3f}, {hi:.3f}] "
                                             f"(strictly inside 1 ± {tol:g}; thesis 8.05e-4 / 7.77e-4 = 1.036)")


def _artefacts(m, cfg=None):
    lo = m["artefact_gap_worst_lo"]
    if _nan(lo):
        return None, "no fine-tuned autoencoder (or no interval)"
    return lo > 0, (f"share of the residual A(x) - x common to every image: A_S {m['artefact_const_A_S']:.4f}, "
                    f"smallest fine-tuned {m['artefact_const_min_ft']:.4f}; worst lower end of (A_i - A_S) "
                    f"{lo:+.4f} (must be > 0 for every A_i, paired bootstrap)")


def _ic_ranking(m, cfg=None):
    if "ic_rank_gap_lo" not in m:
        return None, "needs the autoencoders of alexnet, resnet50, vgg16 and inception_v3"
    ok, detail = interval_above(m["ic_rank_gap_lo"], 0.0, "worst pair's paired 95% bootstrap interval", "")
    return ok, f"IC-nMI of A_V and A_I above A_A and A_R, every pair: {detail}"


def _fca_top(m, cfg=None):
    d, lo, hi = m["fca_top_margin"], m["fca_top_margin_lo"], m["fca_top_margin_hi"]
    if _nan(lo, hi):
        return None, "no interval of the attribute margin"
    return lo > 0, (f"attributes (signals with CR_min > t = {_t(cfg)}) of the most accurate classifier minus the most "
                    f"of any other: {d:+g} [{lo:+g}, {hi:+g}] (lower end must be > 0; thesis: f_I has all 5, the "
                    f"next 3)")


def _fca_concepts(m, cfg=None):
    c, lo, hi = m["fca_concepts"], m["fca_concepts_lo"], m["fca_concepts_hi"]
    if _nan(lo, hi):
        return None, "no interval of the concept count"
    return lo >= 3, (f"{c:g} concepts at t = {_t(cfg)} [{lo:g}, {hi:g}] (lower end must be >= 3: more than the "
                     f"one-concept lattice of signals that work everywhere and the two-concept chain; thesis 6)")


# --- claims, each with hand-made metrics for PASS / FAIL / SKIP (default run's magnitudes) ---------
NAN = float("nan")
_DIFFS_WITHIN = {**iv("top1_lenet_diff", -0.6, -1.5, 0.3), **iv("top1_small_diff", -0.9, -1.8, 0.0),
                 **iv("top1_wide_diff", 0.4, -0.4, 1.2), **iv("top1_deep_diff", -1.1, -1.9, -0.3),
                 **iv("top1_residual_diff", -0.2, -1.0, 0.6)}
CLAIM_MARGIN = Claim("f_i o A_i stays within a small margin of f_i, in both directions (±cfg.margin top-1 points)",
                     _within_margin, presets=("default", "paper"), source="000 L1169-1171, Tab 5.1",
                     fixtures=Fixtures(PASS=_DIFFS_WITHIN, FAIL=iv("top1_residual_diff", -5.2, -6.8, -3.6),
                                       SKIP=iv("top1_lenet_diff", NAN, NAN, NAN)))
CLAIM_IC = Claim("the pre-trained SegNet A_S preserves the most information (highest IC-nMI)", _ic_highest,
                 presets=("default", "paper"), source="000 L1213",
                 fixtures=Fixtures(PASS={"ic_nmi_A_S": 0.81, "ic_nmi_best_ft": 0.77, "ic_nmi_gap_lo": 0.012,
                                         "ic_nmi_gap_hi": 0.068},
                                   FAIL={"ic_nmi_A_S": 0.77, "ic_nmi_best_ft": 0.78, "ic_nmi_gap_lo": -0.031,
                                         "ic_nmi_gap_hi": 0.012},
                                   SKIP={"ic_nmi_gap_lo": NAN, "ic_nmi_gap_hi": NAN}))

CLAIM_BC = Claim("BC-nMI of the AlexNet and ResNet50 autoencoders is substantially larger than that of the VGG16 and "
                 "Inception-v3 autoencoders (each pair: interval above 0, gap >= 10 % of the lower)", _bc_ranking,
                 presets=("paper",), source="000 L1209-1211, Fig 5.5",
                 fixtures=Fixtures(PASS={"bc_rank_gap_lo": 0.021, "bc_rank_rel_gap": 0.18},
                                   FAIL={"bc_rank_gap_lo": 0.004, "bc_rank_rel_gap": 0.03},   # apart, not substantially
                                   SKIP={"bc_rank_gap_lo": ABSENT, "bc_rank_rel_gap": ABSENT}))   # four AEs not run


# the accuracy findings: magnitudes of the default run (8:1 SegNet, five digit classifiers)
_ACC_PASS = {"own_margin_worst_lo": 0.6, "own_columns_beyond_noise": 5.0, "own_columns": 5.0,
             "crmin_offdiag_cells": 20.0, "crmin_below_t_cells": 12.0, "crmin_above100_cells": 2.0,
             "crmin_asym_pairs": 3.0, "crmin_offdiag_min": 42.0, "crmin_offdiag_median": 86.0,
             "crmin_offdiag_max": 104.0, "gain_acc_spearman": -0.9, "gain_acc_spearman_lo": -1.0,
             "gain_acc_spearman_hi": -0.3, "fca_top_margin": 2.0, "fca_top_margin_lo": 1.0, "fca_top_margin_hi": 3.0,
             "fca_concepts": 5.0, "fca_concepts_lo": 3.0, "fca_concepts_hi": 7.0}


def _acc_claim(text, check, keys, fail, skip, source):
    """A claim on accuracy_findings' keys: PASS fixture = those keys of _ACC_PASS."""
    return Claim(text, check, presets=("default", "paper"), source=source,
                 fixtures=Fixtures(PASS={k: _ACC_PASS[k] for k in keys}, FAIL=fail, SKIP=skip))


CLAIM_OWN_BEST = _acc_claim(
    "each classifier does best on its own autoencoder (Tab 5.2: every column's maximum on the diagonal, beyond noise)",
    _own_best, ("own_margin_worst_lo", "own_columns_beyond_noise", "own_columns"),
    {"own_margin_worst_lo": -0.4, "own_columns_beyond_noise": 4.0},   # one column's margin includes 0
    {"own_margin_worst_lo": NAN}, "000 L1262, Tab 5.2")
CLAIM_DRASTIC = _acc_claim(
    "strong form: accuracy varies drastically with the (classifier, autoencoder) pair: at least half of the "
    "off-diagonal CR_min below t beyond noise", _drastic,
    ("crmin_below_t_cells", "crmin_offdiag_cells", "crmin_offdiag_min", "crmin_offdiag_median", "crmin_offdiag_max"),
    {"crmin_below_t_cells": 3.0, "crmin_offdiag_median": 97.0},   # a few weak cells, most near 100
    {"crmin_below_t_cells": NAN}, "000 L1232, Tab 5.3")
CLAIM_ASYM = _acc_claim(
    "CR_min is asymmetric: some pair has CR_min(f_j o A_i) above t and CR_min(f_i o A_j) below t, beyond noise",
    _asymmetric, ("crmin_asym_pairs",), {"crmin_asym_pairs": 0.0}, {"crmin_asym_pairs": NAN}, "000 L1271, Tab 5.3")
CLAIM_ABOVE_100 = _acc_claim(
    "some off-diagonal CR_min lies above 100 beyond noise (a classifier reads another's signal better than the "
    "weaker of the two reads its own)", _above_100, ("crmin_above100_cells", "crmin_offdiag_max"),
    {"crmin_above100_cells": 0.0}, {"crmin_above100_cells": NAN}, "000 L1266, Tab 5.3")
CLAIM_WEAKEST_GAIN = _acc_claim(
    "the less accurate classifiers gain the most from their own autoencoder (Spearman of gain vs accuracy < 0)",
    _weakest_gain, ("gain_acc_spearman", "gain_acc_spearman_lo", "gain_acc_spearman_hi"),
    {"gain_acc_spearman": -0.3, "gain_acc_spearman_lo": -0.9, "gain_acc_spearman_hi": 0.4},
    {"gain_acc_spearman_lo": NAN, "gain_acc_spearman_hi": NAN}, "000 L1169-1171, Tab 5.1")
CLAIM_FCA_TOP = _acc_claim(
    "FCA at t: the most accurate classifier works with the most signals (strictly more attributes than any other)",
    _fca_top, ("fca_top_margin", "fca_top_margin_lo", "fca_top_margin_hi"),
    {"fca_top_margin": 0.0, "fca_top_margin_lo": -1.0, "fca_top_margin_hi": 1.0},   # tied with another
    {"fca_top_margin_lo": NAN, "fca_top_margin_hi": NAN}, "000 L1283, Fig 5.6")
CLAIM_FCA_CONCEPTS = _acc_claim(
    "FCA at t: the lattice is more than a chain (at least 3 concepts beyond noise; thesis 6)", _fca_concepts,
    ("fca_concepts", "fca_concepts_lo", "fca_concepts_hi"),
    {"fca_concepts": 2.0, "fca_concepts_lo": 1.0, "fca_concepts_hi": 4.0},
    {"fca_concepts_lo": NAN, "fca_concepts_hi": NAN}, "000 L1271-1283, Fig 5.6")
CLAIM_MSE = Claim("the pre-trained A_S reconstructs held-out images about as well as its training images "
                  "(MSE ratio strictly inside 1 ± cfg.mse_tolerance)", _mse_held_out, presets=("default", "paper"),
                  source="000 L1153-1155",
                  fixtures=Fixtures(PASS={"mse_A_S_ratio": 1.02, "mse_A_S_ratio_lo": 0.97, "mse_A_S_ratio_hi": 1.07},
                                    FAIL={"mse_A_S_ratio": 1.25, "mse_A_S_ratio_lo": 1.18, "mse_A_S_ratio_hi": 1.32},
                                    SKIP={"mse_A_S_ratio_lo": NAN, "mse_A_S_ratio_hi": NAN}))
CLAIM_ARTEFACTS = Claim("the fine-tuned autoencoders' artefacts are constant across samples (a larger share of the "
                        "residual A_i(x) - x is common to every image than for A_S, every A_i)", _artefacts,
                        presets=("default", "paper"), source="000 L1200-1204, Fig 5.4",
                        fixtures=Fixtures(PASS={"artefact_gap_worst_lo": 0.02, "artefact_const_A_S": 0.05,
                                                "artefact_const_min_ft": 0.09},
                                          FAIL={"artefact_gap_worst_lo": -0.01, "artefact_const_min_ft": 0.05},
                                          SKIP={"artefact_gap_worst_lo": NAN}))
CLAIM_IC_RANK = Claim("IC-nMI of the VGG16 and Inception-v3 autoencoders above that of the AlexNet and ResNet50 "
                      "autoencoders (each pair: paired interval above 0)", _ic_ranking, presets=("paper",),
                      source="000 L1213, Fig 5.5",
                      fixtures=Fixtures(PASS={"ic_rank_gap_lo": 0.012}, FAIL={"ic_rank_gap_lo": -0.004},
                                        SKIP={"ic_rank_gap_lo": ABSENT}))


IMAGENET_VAL = "ImageNet val (ILSVRC2012, 50,000 images)"


def _reg(name, target, title, source, reported=None, claims=(), reported_on=IMAGENET_VAL):
    register(Experiment(name=f"capacity.{name}", target=f"capacity.tables:{target}", config=CapacityConfig,
                        presets=PRESETS, title=title, source=source, reported=reported or {},
                        reported_on=reported_on, claims=claims))


_reg("tab5_1", "table_5_1", "Top-1/top-5 of f_i and f_i o A_i", f"{S}, Tab 5.1", REPORTED_51,
     (CLAIM_MARGIN, CLAIM_WEAKEST_GAIN))
_reg("reconstructions", "reconstructions", "Reconstructions of A_S and every A_i, with zoomed crops",
     f"{S}, Fig 5.3, 5.4, A.2-A.4", REPORTED_REC, (CLAIM_MSE, CLAIM_ARTEFACTS))
_reg("fig5_5", "figure_5_5", "IC-nMI and BC-nMI per autoencoder", f"{S}, Fig 5.5", {},
     (CLAIM_IC, CLAIM_IC_RANK, CLAIM_BC))
_reg("tab5_2", "table_5_2_5_3", "Accuracy of every f_j o A_i (Tab 5.2) and CR_min (Tab 5.3)",
     f"{S}, Tab 5.2, 5.3", REPORTED_52, (CLAIM_OWN_BEST, CLAIM_DRASTIC, CLAIM_ASYM, CLAIM_ABOVE_100))
_reg("fig5_6", "figure_5_6", "FCA lattices of 'signal i works for classifier j' (CR_min > t)",
     f"{S}, Fig 5.6, A.5", REPORTED_56, (CLAIM_FCA_TOP, CLAIM_FCA_CONCEPTS),
     reported_on=f"{IMAGENET_VAL}, through Tab 5.3")
# --- the sweep: the accuracy findings per bottleneck ratio of the default preset (so the README can
# say where each starts); other presets' ratios have their keys in the results but no claims ---------
SWEEP_CLAIMS = (CLAIM_OWN_BEST, CLAIM_DRASTIC, CLAIM_ASYM, CLAIM_ABOVE_100, CLAIM_WEAKEST_GAIN, CLAIM_FCA_TOP,
                CLAIM_FCA_CONCEPTS)


def _at_ratio(check, key):
    """``check`` on the sweep point ``key``'s metrics (suffix ``_<key>`` removed), with the sweep's
    threshold; SKIP when the run has no such point (another sweep_widths)."""
    sfx = f"_{key}"

    def at(m, cfg=None):
        sub = {k[:-len(sfx)]: v for k, v in m.items() if k.endswith(sfx)}
        if not sub:
            return None, f"no sweep point at {key} in this run"
        return check(sub, dataclasses.replace(cfg, finding_threshold=cfg.sweep_threshold) if cfg is not None else None)
    return at


def _sweep_claims():
    from capacity.findings import ratio_key, sweep_ratios
    d = CapacityConfig()
    out = []
    for r in sorted(sweep_ratios(d.sweep_widths, d.image_size, 1)):
        k = ratio_key(r)
        for c in SWEEP_CLAIMS:
            f = c.fixtures
            out.append(Claim(f"at {r:g}:1, {c.text}", _at_ratio(c.check, k), presets=("default",),
                             source=c.source + " (bottleneck sweep, not in the thesis)",
                             fixtures=Fixtures(PASS={f"{x}_{k}": v for x, v in f.PASS.items()},
                                               FAIL={f"{x}_{k}": v for x, v in f.FAIL.items()},
                                               SKIP={f"{x}_{k}": v for x, v in f.SKIP.items()})))
    return tuple(out)


register(Experiment(name="capacity.bottleneck_sweep", target="capacity.sweep:bottleneck_sweep", config=CapacityConfig,
                    presets=PRESETS, title="Specialisation (off-diagonal CR_min, FCA concepts) against the bottleneck ratio",
                    source=f"{S}, Tab 5.3 / Fig 5.6 at several bottleneck ratios (not in the thesis)", reported={},
                    reported_on=IMAGENET_VAL, claims=_sweep_claims()))
