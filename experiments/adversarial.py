"""Thesis 000, chapter 6: StSNets (f_i o A_i, a classifier behind the autoencoder fine-tuned for it in
chapter 5) under the chapter's white-box threat model, its ablations, and an adaptive attack.

One config (adversarial.config.AdversarialConfig) for every experiment; its nested ``capacity``
config takes capacity's own presets (imported from capacity/config.py, not copied), so the
classifiers and autoencoders are the ones capacity's runs trained (identical stage keys) and the
attack runs are cached per attacked model and shared (Fig 6.4 reuses Fig 6.3's attacks on the StSNets).
"""
from __future__ import annotations

import math

from adversarial.config import PRESETS, AdversarialConfig   # dataclasses only
from common.claims import Claim, Fixtures, interval_above, interval_below, interval_metrics as iv
from common.registry import Experiment, register

S = "000 ch. 6"
ATTACKS = ("fgsm", "bim", "cw")
ROLES = ("R", "I")


# --------------------------------------------------------------------------------------------------
# Claim checks (each on the seed's paired bootstrap intervals over test images; over seeds: all pass)
# --------------------------------------------------------------------------------------------------
def _nan(*v):
    return any(x is None or (isinstance(x, float) and math.isnan(x)) for x in v)


def _all(parts):
    """parts: [(ok | None, text)] -> one verdict: SKIP if any is None, else all must hold."""
    if any(ok is None for ok, _ in parts):
        return None, "; ".join(t for _, t in parts)
    return all(ok for ok, _ in parts), "; ".join(t for _, t in parts)


def _gap_above(m, key, thr, what):
    if _nan(m[key], m[key + "_lo"]):
        return None, f"{what}: no matched-L2 overlap"
    return m[key + "_lo"] > thr, f"{what} {m[key]:+.1f} [{m[key + '_lo']:+.1f}, {m[key + '_hi']:+.1f}] > {thr:+g}"


def _gap_below(m, key, thr, what):
    if _nan(m[key], m[key + "_hi"]):
        return None, f"{what}: no matched-L2 overlap"
    return m[key + "_hi"] < thr, f"{what} {m[key]:+.1f} [{m[key + '_lo']:+.1f}, {m[key + '_hi']:+.1f}] < {thr:+g}"


def _stsnet_above(m, cfg):
    parts = []
    for r in ROLES:
        for a in ATTACKS:
            parts.append(_gap_above(m, f"gap_{a}_f{r}_A{r}_vs_f{r}", 0.0, f"{a} StSNet_{r} - f_{r}"))
            parts.append(interval_above(m[f"drop_{a}_f{r}_lo"], 0.0, f"{a} f_{r} drop clean->max budget", ""))
    return _all(parts)


def _iterative_stronger(m, cfg):
    parts = []
    for tag in ("fR", "fI", "fR_AR", "fI_AI", "fR_AS"):
        for a in ("bim", "cw"):
            parts.append(_gap_below(m, f"gap_{a}_vs_fgsm_{tag}", cfg.tol, f"{tag} {a} - fgsm"))
    return _all(parts)


def _monotone(m, cfg, tags=("fR", "fI", "fR_AR", "fI_AI", "fR_AS")):
    parts = [interval_below(m[f"rise_{a}_{t}_hi"], cfg.tol, f"{t} {a} largest rise between budgets", "")
             for t in tags for a in ATTACKS]
    return _all(parts)


def _ordering(m, cfg):
    parts = []
    for a in ATTACKS:
        parts.append(_gap_above(m, f"gap_{a}_fR_AS_vs_fR", 0.0, f"{a} f_R o A_S - f_R"))
        for r in ROLES:
            parts.append(_gap_above(m, f"gap_{a}_f{r}_A{r}_vs_fR_AS", 0.0, f"{a} StSNet_{r} - f_R o A_S"))
    return _all(parts)


def _no_clean_cost(m, cfg):
    return _all([interval_above(m[f"clean_cost_{r}_lo"], -cfg.margin,
                                f"top-1(StSNet_{r}) - top-1(f_{r}) = {m[f'clean_cost_{r}']:+.1f}, paired 95% interval", "")
                 for r in ROLES])


def _inception_vs_resnet(m, cfg):
    a = "fgsm"   # "mostly noticeable with FGSM attacks"
    ok1 = _gap_above(m, f"gap_{a}_fI_vs_fR", 0.0, "fgsm f_I - f_R")
    if _nan(m[f"gap_{a}_fI_AI_vs_fR_AR"], m[f"gap_{a}_fI_vs_fR"]):
        return None, "no matched-L2 overlap"
    wider = m[f"gap_{a}_fI_AI_vs_fR_AR"] > m[f"gap_{a}_fI_vs_fR"]
    return _all([ok1, (wider, f"gap with the AE {m[f'gap_{a}_fI_AI_vs_fR_AR']:+.1f} > without {m[f'gap_{a}_fI_vs_fR']:+.1f}")])


def _direct_as_robust(m, cfg):
    return _all([_gap_above(m, f"gap_{a}_f{r}_from_f{r}_A{r}_vs_f{r}_A{r}", -cfg.tol, f"{a} f_{r}(adv of StSNet) - StSNet")
                 for r in ROLES for a in ATTACKS])


def _bpda_between(m, cfg):
    parts = []
    for r in ROLES:
        for a in ATTACKS:
            parts.append(_gap_above(m, f"gap_{a}_bpda_f{r}_A{r}_vs_f{r}", -cfg.tol, f"{a} BPDA_{r} - f_{r}"))
            parts.append(_gap_above(m, f"gap_{a}_f{r}_A{r}_vs_bpda_f{r}_A{r}", -cfg.tol, f"{a} StSNet_{r} - BPDA_{r}"))
    return _all(parts)


def _ssim_separated(m, cfg):
    ok, d = interval_above(m["ssim_sep_lo"], 0.0, "min SSIM among AE-based gradients - max SSIM(f_R, .), 95% bootstrap", "")
    return ok, f"max SSIM(f_R, .) = {m['ssim_fR_max']:.3f}, min among AE-based = {m['ssim_ae_min']:.3f}; {d}"


# --------------------------------------------------------------------------------------------------
# Fixtures: hand-made metrics for PASS / FAIL / SKIP (accuracy points, the default run's magnitudes;
# a gap is (mean, lo, hi), its paired 95 % interval; NaN: no matched-L2 overlap)
# --------------------------------------------------------------------------------------------------
NAN = float("nan")
_NAN3 = (NAN, NAN, NAN)
TAGS = ("fR", "fI", "fR_AR", "fI_AI", "fR_AS")


def _gaps(template, values):
    """``{template.format(a=attack, r=role): (mean, lo, hi)}`` -> the metrics of those gaps."""
    return {k: v for (a, r), g in values.items() for k, v in iv(template.format(a=a, r=r), *g).items()}


_STSNET_ABOVE = {**_gaps("gap_{a}_f{r}_A{r}_vs_f{r}", {
                     ("fgsm", "R"): (8.6, 5.2, 12.0), ("bim", "R"): (26.4, 22.9, 29.9), ("cw", "R"): (4.1, 1.6, 6.6),
                     ("fgsm", "I"): (6.2, 2.9, 9.5), ("bim", "I"): (19.7, 15.8, 23.6), ("cw", "I"): (3.3, 0.9, 5.7)}),
                 **{f"drop_{a}_f{r}{end}": v for a, d in (("fgsm", 61.0), ("bim", 88.5), ("cw", 79.2)) for r in ROLES
                    for end, v in (("", d), ("_lo", d - 3.1))}}
# iterative minus FGSM at matched L2: BIM far stronger, C&W a little
_ITERATIVE = {k: v for t in TAGS for a, g in (("bim", (-19.6, -22.3, -16.9)), ("cw", (-3.1, -5.0, -1.2)))
              for k, v in iv(f"gap_{a}_vs_fgsm_{t}", *g).items()}
# the largest rise of accuracy between two budgets and its upper bound: noise around 0
_RISES = {f"rise_{a}_{t}{end}": v for t in TAGS for a in ATTACKS for end, v in (("", 0.3), ("_hi", 1.1))}
_ORDERED = {**_gaps("gap_{a}_fR_AS_vs_fR", {(a, "R"): (3.4, 1.0, 5.8) for a in ATTACKS}),
            **_gaps("gap_{a}_f{r}_A{r}_vs_fR_AS", {(a, r): (5.2, 2.6, 7.8) for a in ATTACKS for r in ROLES})}
_DIRECT = _gaps("gap_{a}_f{r}_from_f{r}_A{r}_vs_f{r}_A{r}", {
    ("fgsm", "R"): (7.9, 5.1, 10.6), ("bim", "R"): (23.7, 20.1, 27.3), ("cw", "R"): (7.6, 5.6, 9.5),
    ("fgsm", "I"): (8.3, 5.3, 11.3), ("bim", "I"): (35.4, 31.0, 39.8), ("cw", "I"): (7.2, 4.9, 9.5)})
_BPDA = {**_gaps("gap_{a}_bpda_f{r}_A{r}_vs_f{r}", {(a, r): (6.7, 3.9, 9.5) for a in ATTACKS for r in ROLES}),
         **_gaps("gap_{a}_f{r}_A{r}_vs_bpda_f{r}_A{r}", {(a, r): (1.4, -0.9, 3.7) for a in ATTACKS for r in ROLES})}


L = {"tol": "within cfg.tol accuracy points", "m": "cfg.margin"}
C_ABOVE = Claim("each StSNet lies above its baseline at matched normalised L2 for FGSM, BIM and C&W, and the "
                "baseline actually drops", _stsnet_above, presets=("default", "paper"), source="000 L1480-1484, Fig 6.3",
                fixtures=Fixtures(PASS=_STSNET_ABOVE, FAIL=iv("gap_cw_fI_AI_vs_fI", -5.1, -8.4, -1.8),
                                  SKIP=iv("gap_bim_fI_AI_vs_fI", *_NAN3)))
C_ITER = Claim(f"iterative attacks (BIM, C&W) at least as strong as FGSM at matched L2 ({L['tol']})", _iterative_stronger,
               presets=("default", "paper"), source="000 L1496-1500",
               fixtures=Fixtures(PASS=_ITERATIVE, FAIL=iv("gap_cw_vs_fgsm_fR", 3.2, 2.4, 4.0),
                                 SKIP=iv("gap_cw_vs_fgsm_fR", *_NAN3)))
C_MONO = Claim("accuracy non-increasing as the budget grows (no rise between budgets whose upper bound "
                "reaches cfg.tol points)", _monotone,
               presets=("default", "paper"), source="000 L1500",
               fixtures=Fixtures(PASS=_RISES, FAIL={"rise_fgsm_fR": 4.8, "rise_fgsm_fR_hi": 6.3},   # FGSM recovers
                                 SKIP={"rise_fgsm_fR": NAN, "rise_fgsm_fR_hi": NAN}))
C_ORDER = Claim("f_R below f_R o A_S below both StSNets at matched L2", _ordering, presets=("default", "paper"),
                source="000 L1484, L1492",
                fixtures=Fixtures(PASS=_ORDERED, FAIL=iv("gap_bim_fR_AS_vs_fR", -11.4, -15.0, -7.8),
                                  SKIP=iv("gap_bim_fR_AS_vs_fR", *_NAN3)))
C_CLEAN = Claim("no clean-accuracy cost: top-1 of f_i o A_i not below f_i by more than cfg.margin", _no_clean_cost,
                source="000 L1558, Tab 5.1",
                fixtures=Fixtures(PASS={**iv("clean_cost_R", -0.4, -1.2, 0.4), **iv("clean_cost_I", -0.8, -1.7, 0.1)},
                                  FAIL=iv("clean_cost_R", -5.3, -6.6, -4.0),
                                  SKIP=iv("clean_cost_I", *_NAN3)))
C_INC = Claim("Inception-v3 slightly more robust than ResNet50 (FGSM), the gap wider with the autoencoder",
              _inception_vs_resnet, presets=("paper",), source="000 L1482",
              fixtures=Fixtures(PASS={**iv("gap_fgsm_fI_vs_fR", 2.1, 0.8, 3.4), **iv("gap_fgsm_fI_AI_vs_fR_AR", 4.6, 3.0, 6.2)},
                                FAIL=iv("gap_fgsm_fI_AI_vs_fR_AR", 1.2, -0.5, 2.9),   # the AE narrows the gap
                                SKIP=iv("gap_fgsm_fI_vs_fR", *_NAN3)))
C_DIRECT = Claim(f"attacks computed on the StSNet and fed to the classifier are at least as robust as the regular "
                 f"setting ({L['tol']})", _direct_as_robust, presets=("default", "paper"), source="000 L1514, Fig 6.4",
                 fixtures=Fixtures(PASS=_DIRECT, FAIL=iv("gap_fgsm_fR_from_fR_AR_vs_fR_AR", -6.0, -8.7, -3.3),
                                   SKIP=iv("gap_cw_fI_from_fI_AI_vs_fI_AI", *_NAN3)))
C_BPDA = Claim(f"the classifier's gradients at A(x), evaluated on the ensemble, lie between f_i and the regular "
               f"StSNet ({L['tol']})", _bpda_between, presets=("default", "paper"), source="000 L1518-1526, Fig 6.5",
               fixtures=Fixtures(PASS=_BPDA, FAIL=iv("gap_bim_fR_AR_vs_bpda_fR_AR", -22.1, -26.0, -18.2),   # BPDA_R above StSNet_R
                                 SKIP=iv("gap_bim_bpda_fI_AI_vs_fI", *_NAN3)))
C_SSIM = Claim("every SSIM(f_R, .) is below every SSIM between two autoencoder-based gradients", _ssim_separated,
               presets=("default", "paper"), source="000 L1535, L1544, Tab 6.1",
               fixtures=Fixtures(PASS={"ssim_fR_max": 0.18, "ssim_ae_min": 0.32, **iv("ssim_sep", 0.14, 0.09, 0.19)},
                                 FAIL={"ssim_fR_max": 0.31, "ssim_ae_min": 0.29, **iv("ssim_sep", -0.02, -0.06, 0.02)},
                                 SKIP=iv("ssim_sep", *_NAN3)))

# --- reported numbers, exactly as printed (Tab 6.1, upper triangle) --------------------------------
_T61 = {("f_R", "f_R o A_R"): 0.17, ("f_R", "f_R o A_S"): 0.18, ("f_R", "A_R"): 0.12, ("f_R", "A_S"): 0.14,
        ("f_R o A_R", "f_R o A_S"): 0.40, ("f_R o A_R", "A_R"): 0.46, ("f_R o A_R", "A_S"): 0.32,
        ("f_R o A_S", "A_R"): 0.37, ("f_R o A_S", "A_S"): 0.36, ("A_R", "A_S"): 0.36}


def _slug(n):
    return n.replace(" o ", "_").replace("f_", "f").replace("A_", "A")


REPORTED_61 = {f"ssim_{_slug(a)}__{_slug(b)}": v for (a, b), v in _T61.items()}
IMAGENET_VAL = "ImageNet val (ILSVRC2012, 50,000 images), ResNet50 / Inception-v3"


def _reg(name, target, title, source, claims=(), reported=None):
    register(Experiment(name=f"adversarial.{name}", target=f"adversarial.tables:{target}", config=AdversarialConfig,
                        presets=PRESETS, title=title, source=source, reported=reported or {},
                        reported_on=IMAGENET_VAL, claims=claims,
                        lane="capacity"))   # trains / loads capacity's stages: never at once with capacity's runs


_reg("fig6_3", "figure_6_3", "White-box FGSM / BIM / C&W: accuracy vs normalised L2 of f_R, f_I, their StSNets and "
     "f_R o A_S", f"{S}, Fig 6.3", (C_ABOVE, C_ITER, C_MONO, C_ORDER, C_CLEAN, C_INC))
_reg("fig6_4", "figure_6_4", "Ablation: attacks on the StSNet fed directly to the classifier", f"{S}, Fig 6.4",
     (C_DIRECT,))
_reg("fig6_5", "figure_6_5", "Ablation: the classifier's gradient at A(x) (BPDA-style), evaluated on the StSNet",
     f"{S}, Fig 6.5", (C_BPDA,))
_reg("tab6_1", "table_6_1", "Pairwise SSIM of input-gradient magnitudes (Tab 6.1) and Fig 6.6", f"{S}, Tab 6.1, "
     "Fig 6.6", (C_SSIM,), REPORTED_61)
_reg("adaptive", "adaptive", "Beyond the thesis: AutoAttack and PGD with restarts through the whole StSNet",
     "extension (issue 15; Athalye et al. 2018, Tramer et al. 2020)")
