"""Thesis 000, chapter 5 (and app. A.2): effective capacity, "what do deep networks like to see".

One config for all capacity experiments (capacity.config.CapacityConfig): they share the trained
classifiers, A_S and the A_i (identical work-folder keys) and one cached evaluation pass. Science in
capacity/; other chapters reuse the trained models through capacity.models.trained_models.
"""
from __future__ import annotations

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
                                                     "so not comparable; ours: digits in [0, 1]"}}
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


def _diag_100(m, cfg=None):
    dev = m["crmin_diag_max_dev"]
    if math.isnan(dev):
        return None, "a diagonal cell is 0 / 0 (a composite f_i o A_i at 0 % top-1)"
    return dev < 1e-9, f"max |CR_min(f_i o A_i) - 100| = {dev:.2g}"


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


# --- claims, each with hand-made metrics for PASS / FAIL / SKIP (default run's magnitudes) ---------
NAN = float("nan")
_DIFFS_WITHIN = {**iv("top1_lenet_diff", -0.6, -1.5, 0.3), **iv("top1_small_diff", -0.9, -1.8, 0.0),
                 **iv("top1_wide_diff", 0.4, -0.4, 1.2), **iv("top1_deep_diff", -1.1, -1.9, -0.3),
                 **iv("top1_residual_diff", -0.2, -1.0, 0.6)}
CLAIM_MARGIN = Claim("f_i o A_i stays within a small margin of f_i, in both directions (±cfg.margin top-1 points)",
                     _within_margin, presets=("default", "paper"), source="000 L1169-1171, Tab 5.1",
                     fixtures=Fixtures(PASS=_DIFFS_WITHIN, FAIL=iv("top1_residual_diff", -5.2, -6.8, -3.6),
                                       SKIP=iv("top1_lenet_diff", NAN, NAN, NAN)))
# CR_min divides each column by its diagonal cell: the diagonal is 100 by definition (a unit test's
# finding, kept until the chapter issue decides); FAIL is made by hand
CLAIM_DIAG = Claim("CR_min diagonal = 100", _diag_100, source="000 Tab 5.3",
                   fixtures=Fixtures(PASS={"crmin_diag_max_dev": 1.4e-14}, FAIL={"crmin_diag_max_dev": 3.2},
                                     SKIP={"crmin_diag_max_dev": NAN}))
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


IMAGENET_VAL = "ImageNet val (ILSVRC2012, 50,000 images)"


def _reg(name, target, title, source, reported=None, claims=(), reported_on=IMAGENET_VAL):
    register(Experiment(name=f"capacity.{name}", target=f"capacity.tables:{target}", config=CapacityConfig,
                        presets=PRESETS, title=title, source=source, reported=reported or {},
                        reported_on=reported_on, claims=claims))


_reg("tab5_1", "table_5_1", "Top-1/top-5 of f_i and f_i o A_i", f"{S}, Tab 5.1", REPORTED_51, (CLAIM_MARGIN,))
_reg("reconstructions", "reconstructions", "Reconstructions of A_S and every A_i, with zoomed crops",
     f"{S}, Fig 5.3, 5.4, A.2-A.4", REPORTED_REC)
_reg("fig5_5", "figure_5_5", "IC-nMI and BC-nMI per autoencoder", f"{S}, Fig 5.5", {}, (CLAIM_IC, CLAIM_BC))
_reg("tab5_2", "table_5_2_5_3", "Accuracy of every f_j o A_i (Tab 5.2) and CR_min (Tab 5.3)",
     f"{S}, Tab 5.2, 5.3", REPORTED_52, (CLAIM_DIAG,))
_reg("fig5_6", "figure_5_6", "FCA lattices of 'signal i works for classifier j' (CR_min > t)",
     f"{S}, Fig 5.6, A.5", REPORTED_56, reported_on=f"{IMAGENET_VAL}, through Tab 5.3")
register(Experiment(name="capacity.bottleneck_sweep", target="capacity.sweep:bottleneck_sweep", config=CapacityConfig,
                    presets=PRESETS, title="Specialisation (off-diagonal CR_min, FCA concepts) against the bottleneck ratio",
                    source=f"{S}, Tab 5.3 / Fig 5.6 at several bottleneck ratios (not in the thesis)", reported={},
                    reported_on=IMAGENET_VAL))
