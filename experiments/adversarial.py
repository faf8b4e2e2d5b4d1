"""Thesis 000, chapter 6: StSNets (f_i o A_i, a classifier behind the autoencoder fine-tuned for it in
chapter 5) under the chapter's white-box threat model, its ablations, and an adaptive attack.

One config (adversarial.config.AdversarialConfig) for every experiment; its nested ``capacity``
config takes capacity's own presets (imported from capacity/config.py, not copied), so the
classifiers and autoencoders are the ones capacity's runs trained (identical stage keys) and the
attack runs are cached per attacked model and shared (Fig 6.4 reuses Fig 6.3's attacks on the StSNets).
"""
from __future__ import annotations

import math

from adversarial.config import PRESETS, AdversarialConfig, attack_items   # dataclasses only
from common.claims import Claim, Fixtures, interval_above, interval_below, interval_metrics as iv
from common.registry import Experiment, register

S = "000 ch. 6"
ROLES = ("R", "I")
_DEFAULT = AdversarialConfig()
ATTACKS = tuple(n for n, _ in attack_items(_DEFAULT.attacks))   # the default's attacks (fixtures)
SINGLE = ("fgsm",)                                               # the single-step attacks of the default


def _names(cfg):
    return [n for n, _ in attack_items((cfg or _DEFAULT).attacks)]


def _single_step(cfg):
    """Names of the config's single-step attacks (``iterative=False`` in adversarial/attacks.py's
    registry; read without importing torch at load time: the registry is imported when judged)."""
    from adversarial.attacks import attack_fn
    return [n for n, st in attack_items((cfg or _DEFAULT).attacks) if not attack_fn(st).iterative]


# --------------------------------------------------------------------------------------------------
# Claim checks (each on the seed's paired bootstrap intervals over test images; over seeds: all pass)
# --------------------------------------------------------------------------------------------------
def _nan(*v):
    return any(x is None or (isinstance(x, float) and math.isnan(x)) for x in v)


def _all(parts):
    """parts: [(ok | None, text)] -> one verdict: FAIL when any judged part fails (a NaN part elsewhere
    does not hide it), else SKIP when any part has no numbers, else PASS. The detail leads with the
    failing parts, then the skipped ones."""
    fails = [t for ok, t in parts if ok is False]
    skips = [t for ok, t in parts if ok is None]
    held = sum(ok is True for ok, _ in parts)
    head = f"{held}/{len(parts)} parts hold"
    if fails:
        return False, f"{head}; FAILING: " + "; ".join(fails) + (f"; no numbers: {'; '.join(skips)}" if skips else "")
    if skips:
        return None, f"{head}; no numbers: " + "; ".join(skips)
    return True, f"{head}: " + "; ".join(t for _, t in parts)


def _gap_above(m, key, thr, what):
    if _nan(m[key], m[key + "_lo"]):
        return None, f"{what}: no matched-L2 overlap"
    return m[key + "_lo"] > thr, f"{what} {m[key]:+.1f} [{m[key + '_lo']:+.1f}, {m[key + '_hi']:+.1f}] > {thr:+g}"


def _gap_below(m, key, thr, what):
    if _nan(m[key], m[key + "_hi"]):
        return None, f"{what}: no matched-L2 overlap"
    return m[key + "_hi"] < thr, f"{what} {m[key]:+.1f} [{m[key + '_lo']:+.1f}, {m[key + '_hi']:+.1f}] < {thr:+g}"


def _stsnet_above(m, cfg):
    """At every budget of every attack (the StSNet's Lbar_2 there, the baseline interpolated to it)."""
    parts = []
    for name, settings in attack_items((cfg or _DEFAULT).attacks):
        for r in ROLES:
            for j in range(1, len(settings.eps) + 1):
                parts.append(_gap_above(m, f"gapb_{name}_f{r}_A{r}_vs_f{r}_{j}", 0.0, f"{name} budget {j} StSNet_{r} - f_{r}"))
            parts.append(interval_above(m[f"drop_{name}_f{r}_lo"], 0.0, f"{name} f_{r} drop clean->max budget", ""))
    return _all(parts)


def _iterative_stronger(m, cfg):
    parts = []
    single = _single_step(cfg)
    for tag in ("fR", "fI", "fR_AR", "fI_AI", "fR_AS"):
        for a in _names(cfg):
            for one in single:
                if a not in single:
                    parts.append(_gap_below(m, f"gap_{a}_vs_{one}_{tag}", cfg.tol, f"{tag} {a} - {one}"))
    return _all(parts)


def _monotone(m, cfg, tags=("fR", "fI", "fR_AR", "fI_AI", "fR_AS")):
    parts = [interval_below(m[f"rise_{a}_{t}_hi"], cfg.tol, f"{t} {a} largest rise between budgets", "")
             for t in tags for a in _names(cfg)]
    return _all(parts)


def _ordering(m, cfg):
    parts = []
    for a in _names(cfg):
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
    return _all([_gap_above(m, f"gap_{a}_fI_vs_fR", 0.0, "fgsm f_I - f_R"),
                 _gap_above(m, f"widen_{a}_fI_vs_fR", 0.0, "fgsm gap (f_I o A_I - f_R o A_R) - gap (f_I - f_R)")])


def _direct_as_robust(m, cfg):
    return _all([_gap_above(m, f"gap_{a}_f{r}_from_f{r}_A{r}_vs_f{r}_A{r}", -cfg.tol, f"{a} f_{r}(adv of StSNet) - StSNet")
                 for r in ROLES for a in _names(cfg)])


def _bpda_stronger(m, cfg):
    """Strictly as stated: the classifier's gradient at A(x) is MORE effective than the white-box
    attack on the ensemble (no tolerance)."""
    return _all([_gap_above(m, f"gap_{a}_f{r}_A{r}_vs_bpda_f{r}_A{r}", 0.0, f"{a} StSNet_{r} - BPDA_{r}")
                 for r in ROLES for a in _names(cfg)])


def _bpda_near_baseline(m, cfg):
    return _all([_gap_above(m, f"gap_{a}_bpda_f{r}_A{r}_vs_f{r}", -cfg.tol, f"{a} BPDA_{r} - f_{r}")
                 for r in ROLES for a in _names(cfg)])


def _ssim_separated(m, cfg):
    ok, d = interval_above(m["ssim_sep_lo"], 0.0, "min SSIM among AE-based gradients - max SSIM(f_R, .), 95% bootstrap", "")
    return ok, f"max SSIM(f_R, .) = {m['ssim_fR_max']:.3f}, min among AE-based = {m['ssim_ae_min']:.3f}; {d}"


def _ssim_closer(m, cfg):
    return interval_above(m["ssim_closer_lo"], 0.0, f"min over A_R, A_S of SSIM(f_R o A_R, A) - SSIM(f_R o A_R, f_R) = "
                          f"{m['ssim_closer']:+.3f}, 95% bootstrap", "")


# --------------------------------------------------------------------------------------------------
# Fixtures: hand-made metrics for PASS / FAIL / SKIP (accuracy points, the default run's magnitudes;
# a gap is (mean, lo, hi), its paired 95 % interval; NaN: no matched-L2 overlap). Keys for every
# attack of the default config.
# --------------------------------------------------------------------------------------------------
NAN = float("nan")
_NAN3 = (NAN, NAN, NAN)
TAGS = ("fR", "fI", "fR_AR", "fI_AI", "fR_AS")
_GAP = {"fgsm": (8.6, 5.2, 12.0), "bim": (26.4, 22.9, 29.9), "cw": (4.1, 1.6, 6.6), "cw_clip": (5.0, 2.1, 7.9)}


def _g(a):
    return _GAP.get(a, (6.0, 3.0, 9.0))


def _gaps(template, values):
    """``{template.format(a=attack, r=role): (mean, lo, hi)}`` -> the metrics of those gaps."""
    return {k: v for (a, r), g in values.items() for k, v in iv(template.format(a=a, r=r), *g).items()}


_STSNET_ABOVE = {**{k: v for a, st in attack_items(_DEFAULT.attacks) for r in ROLES for j in range(1, len(st.eps) + 1)
                    for k, v in iv(f"gapb_{a}_f{r}_A{r}_vs_f{r}_{j}", *_g(a)).items()},
                 **{f"drop_{a}_f{r}{end}": v for a in ATTACKS for r in ROLES
                    for end, v in (("", 61.0), ("_lo", 57.9))}}
# iterative minus FGSM at matched L2: BIM far stronger, C&W a little
_ITERATIVE = {k: v for t in TAGS for a in ATTACKS if a not in SINGLE
              for k, v in iv(f"gap_{a}_vs_fgsm_{t}", *((-19.6, -22.3, -16.9) if a == "bim" else (-3.1, -5.0, -1.2))).items()}
# the largest rise of accuracy between two budgets and its upper bound: noise around 0
_RISES = {f"rise_{a}_{t}{end}": v for t in TAGS for a in ATTACKS for end, v in (("", 0.3), ("_hi", 1.1))}
_ORDERED = {**_gaps("gap_{a}_fR_AS_vs_fR", {(a, "R"): (3.4, 1.0, 5.8) for a in ATTACKS}),
            **_gaps("gap_{a}_f{r}_A{r}_vs_fR_AS", {(a, r): (5.2, 2.6, 7.8) for a in ATTACKS for r in ROLES})}
_DIRECT = _gaps("gap_{a}_f{r}_from_f{r}_A{r}_vs_f{r}_A{r}", {(a, r): (7.9, 5.1, 10.6) for a in ATTACKS for r in ROLES})
_BPDA_STRONGER = _gaps("gap_{a}_f{r}_A{r}_vs_bpda_f{r}_A{r}", {(a, r): (4.4, 1.9, 6.9) for a in ATTACKS for r in ROLES})
_BPDA_NEAR = _gaps("gap_{a}_bpda_f{r}_A{r}_vs_f{r}", {(a, r): (6.7, 3.9, 9.5) for a in ATTACKS for r in ROLES})


L = {"tol": "within cfg.tol accuracy points", "m": "cfg.margin"}
C_ABOVE = Claim("each StSNet lies above its baseline at matched normalised L2 at every budget of every attack, and "
                "the baseline actually drops", _stsnet_above, presets=("default", "paper"), source="000 L1480-1484, Fig 6.3",
                # one budget of one attack below, another with no overlap: FAIL, not SKIP
                fixtures=Fixtures(PASS=_STSNET_ABOVE, FAIL={**iv("gapb_cw_fI_AI_vs_fI_2", -5.1, -8.4, -1.8),
                                                            **iv("gapb_bim_fR_AR_vs_fR_5", *_NAN3)},
                                  SKIP=iv("gapb_bim_fI_AI_vs_fI_5", *_NAN3)))
C_ITER = Claim(f"iterative attacks at least as strong as single-step FGSM at matched L2 ({L['tol']})", _iterative_stronger,
               presets=("default", "paper"), source="000 L1496-1500",
               fixtures=Fixtures(PASS=_ITERATIVE, FAIL={**iv("gap_cw_vs_fgsm_fR", 3.2, 2.4, 4.0),
                                                        **iv("gap_bim_vs_fgsm_fI", *_NAN3)},
                                 SKIP=iv("gap_cw_vs_fgsm_fR", *_NAN3)))
C_MONO = Claim("accuracy non-increasing as the budget grows (no rise between budgets whose upper bound "
                "reaches cfg.tol points)", _monotone,
               presets=("default", "paper"), source="000 L1500",
               fixtures=Fixtures(PASS=_RISES, FAIL={"rise_cw_clip_fR_AR": 4.8, "rise_cw_clip_fR_AR_hi": 6.3,
                                                    "rise_fgsm_fR": NAN, "rise_fgsm_fR_hi": NAN},
                                 SKIP={"rise_fgsm_fR": NAN, "rise_fgsm_fR_hi": NAN}))
C_ORDER = Claim("f_R below f_R o A_S below both StSNets at matched L2", _ordering, presets=("default", "paper"),
                source="000 L1484, L1492",
                fixtures=Fixtures(PASS=_ORDERED, FAIL=iv("gap_bim_fR_AS_vs_fR", -11.4, -15.0, -7.8),
                                  SKIP=iv("gap_bim_fR_AS_vs_fR", *_NAN3)))
C_CLEAN = Claim("no clean-accuracy cost: top-1 of f_i o A_i not below f_i by more than cfg.margin", _no_clean_cost,
                source="000 L1558, Tab 5.1",
                fixtures=Fixtures(PASS={**iv("clean_cost_R", -0.4, -1.2, 0.4), **iv("clean_cost_I", -0.8, -1.7, 0.1)},
                                  FAIL={**iv("clean_cost_R", -5.3, -6.6, -4.0), **iv("clean_cost_I", *_NAN3)},
                                  SKIP=iv("clean_cost_I", *_NAN3)))
C_INC = Claim("Inception-v3 slightly more robust than ResNet50 (FGSM), the gap wider with the autoencoder "
              "(the difference of the two gaps, with its paired interval)",
              _inception_vs_resnet, presets=("paper",), source="000 L1482",
              fixtures=Fixtures(PASS={**iv("gap_fgsm_fI_vs_fR", 2.1, 0.8, 3.4), **iv("widen_fgsm_fI_vs_fR", 2.5, 0.6, 4.4)},
                                FAIL=iv("widen_fgsm_fI_vs_fR", 1.2, -0.5, 2.9),   # wider, but within the noise
                                SKIP=iv("widen_fgsm_fI_vs_fR", *_NAN3)))
C_DIRECT = Claim(f"attacks computed on the StSNet and fed to the classifier are at least as robust as the regular "
                 f"setting ({L['tol']})", _direct_as_robust, presets=("default", "paper"), source="000 L1514, Fig 6.4",
                 fixtures=Fixtures(PASS=_DIRECT, FAIL=iv("gap_fgsm_fR_from_fR_AR_vs_fR_AR", -6.0, -8.7, -3.3),
                                   SKIP=iv("gap_cw_fI_from_fI_AI_vs_fI_AI", *_NAN3)))
C_BPDA = Claim("the classifier's gradients at A(x), evaluated on the ensemble, are more effective than the white-box "
               "attack on the ensemble (StSNet above BPDA, strictly)", _bpda_stronger, presets=("default", "paper"),
               source="000 L1518-1526, Fig 6.5",
               fixtures=Fixtures(PASS=_BPDA_STRONGER, FAIL=iv("gap_bim_fR_AR_vs_bpda_fR_AR", 0.9, -1.4, 3.2),   # tied
                                 SKIP=iv("gap_bim_fI_AI_vs_bpda_fI_AI", *_NAN3)))
C_BPDA_NEAR = Claim(f"...and almost as effective as on the classifier alone: BPDA on the ensemble not below f_i "
                    f"({L['tol']})", _bpda_near_baseline, presets=("default", "paper"), source="000 L1520-1526, Fig 6.5",
                    fixtures=Fixtures(PASS=_BPDA_NEAR, FAIL=iv("gap_bim_bpda_fR_AR_vs_fR", -9.0, -12.1, -5.9),
                                      SKIP=iv("gap_bim_bpda_fI_AI_vs_fI", *_NAN3)))
C_SSIM = Claim("every SSIM(f_R, .) is below every SSIM between two autoencoder-based gradients", _ssim_separated,
               presets=("default", "paper"), source="000 L1535, L1544, Tab 6.1",
               fixtures=Fixtures(PASS={"ssim_fR_max": 0.18, "ssim_ae_min": 0.32, **iv("ssim_sep", 0.14, 0.09, 0.19)},
                                 FAIL={"ssim_fR_max": 0.31, "ssim_ae_min": 0.29, **iv("ssim_sep", -0.02, -0.06, 0.02)},
                                 SKIP=iv("ssim_sep", *_NAN3)))
C_SSIM_CLOSER = Claim("the fine-tuned ensemble's gradients (f_R o A_R) are closer (SSIM) to a plain autoencoder's "
                      "(A_R and A_S) than to the classifier's", _ssim_closer, presets=("default", "paper"),
                      source="000 L1544, Tab 6.1",
                      fixtures=Fixtures(PASS=iv("ssim_closer", 0.15, 0.10, 0.20), FAIL=iv("ssim_closer", -0.03, -0.08, 0.02),
                                        SKIP=iv("ssim_closer", *_NAN3)))

# --------------------------------------------------------------------------------------------------
# adversarial.adaptive: the StSNet's advantage against adaptive attacks, and Athalye et al.'s
# checks that an evaluation is not fooled by obfuscated gradients (each can fail)
# --------------------------------------------------------------------------------------------------
AD_MODELS = ("fR", "fR_AS", "fR_AR", "fI", "fI_AS", "fI_AI")
AD_THESIS = ("fR", "fI", "fR_AR", "fI_AI")          # models Fig 6.3 attacks and the adaptive curve shares
AD_COMPOSITES = ("fR_AS", "fR_AR", "fI_AS", "fI_AI")


def _iterative_budgets(cfg):
    """[(attack, j)] of the iterative attacks that bound an L_inf ball (BIM): the claim's budgets."""
    from adversarial.attacks import attack_fn
    return [(a, j) for a, st in attack_items((cfg or _DEFAULT).attacks) for fn in [attack_fn(st)]
            if fn.iterative and fn.linf_radii is not None for j in range(1, len(st.eps) + 1)]


def _single_budgets(cfg):
    from adversarial.attacks import attack_fn
    return [(a, j) for a, st in attack_items((cfg or _DEFAULT).attacks) for fn in [attack_fn(st)]
            if not fn.iterative and fn.linf_radii is not None for j in range(1, len(st.eps) + 1)]


def _advantage_survives(m, cfg):
    """Per role and per BIM budget where the StSNet's BIM advantage is significant (paired interval
    above 0): its advantage under the worst adaptive attack on the same L_inf ball must be too."""
    parts = []
    for r in ROLES:
        for a, j in _iterative_budgets(cfg):
            b, ad = f"adv_{a}_{r}_{j}", f"adv_adaptive_{a}_{r}_{j}"
            if _nan(m[b + "_lo"]) or not m[b + "_lo"] > 0:
                continue                                        # no advantage under BIM here: nothing to survive
            parts.append(_gap_above(m, ad, 0.0, f"{a} budget {j}, StSNet_{r} - f_{r}: {a} {m[b]:+.1f} -> adaptive"))
    if not parts:
        return None, "no budget where the StSNet's BIM advantage is significant"
    return _all(parts)


def _unbounded(m, cfg):
    parts = []
    for t in AD_MODELS:
        v = m[f"ad_unbounded_{t}"]
        parts.append((None if _nan(v) else v == 0.0, f"{t} {v:.1f} %"))
    return _all(parts)


def _ad_iterative(m, cfg):
    return _all([_gap_below(m, f"ad_iter_vs_{a}_{t}_{j}", cfg.tol, f"{t} APGD-CE - {a} budget {j}")
                 for t in AD_THESIS for a, j in _single_budgets(cfg)])


def _ad_whitebox(m, cfg):
    parts = [_gap_below(m, f"ad_wb_vs_square_{t}", cfg.tol, f"{t} APGD-CE - Square") for t in AD_MODELS]
    parts += [_gap_below(m, f"ad_wb_vs_transfer_{t}", cfg.tol, f"{t} APGD-CE - transfer from f_i") for t in AD_COMPOSITES]
    return _all(parts)


def _ad_monotone(m, cfg):
    return _all([interval_below(m[f"ad_rise_{norm}_{t}_hi"], cfg.tol, f"{t} {norm} APGD-CE largest rise", "")
                 for norm in cfg.adaptive_norms for t in AD_MODELS])


def _ad_apgd_explains(m, cfg):
    return _all([interval_below(m[f"ad_aa_extra_{norm}_{t}_hi"], cfg.tol,
                                f"{t} {norm} APGD-CE - AutoAttack (largest over budgets) {m[f'ad_aa_extra_{norm}_{t}']:+.1f}", "")
                 for norm in cfg.adaptive_norms for t in AD_MODELS])


_NORMS = _DEFAULT.adaptive_norms
_SURVIVES = {k: v for r in ROLES for a, j in _iterative_budgets(None)
             for k, v in {**iv(f"adv_{a}_{r}_{j}", 22.0, 10.0, 34.0), **iv(f"adv_adaptive_{a}_{r}_{j}", 12.0, 4.0, 20.0)}.items()}
_UNBOUNDED = {f"ad_unbounded_{t}": 0.0 for t in AD_MODELS}
_AD_ITER = {k: v for t in AD_THESIS for a, j in _single_budgets(None)
            for k, v in iv(f"ad_iter_vs_{a}_{t}_{j}", -20.0, -30.0, -10.0).items()}
_AD_WB = {**{k: v for t in AD_MODELS for k, v in iv(f"ad_wb_vs_square_{t}", -8.0, -16.0, 0.0).items()},
          **{k: v for t in AD_COMPOSITES for k, v in iv(f"ad_wb_vs_transfer_{t}", -30.0, -42.0, -18.0).items()}}
_AD_RISE = {f"ad_rise_{norm}_{t}{end}": v for norm in _NORMS for t in AD_MODELS for end, v in (("", 0.0), ("_hi", 0.0))}
_AD_AA = {f"ad_aa_extra_{norm}_{t}{end}": v for norm in _NORMS for t in AD_MODELS for end, v in (("", 0.0), ("_hi", 0.0))}

C_SURVIVES = Claim("the StSNet's advantage under BIM survives an adaptive attack: at every BIM budget where the "
                   "StSNet beats f_i under BIM (paired interval), it still beats f_i under the worst adaptive attack "
                   "on the same L_inf ball", _advantage_survives, presets=("default", "paper"),
                   source="000 L1480-1484 read against Athalye et al. 2018 (issue 23)",
                   fixtures=Fixtures(PASS=_SURVIVES, FAIL={**iv("adv_adaptive_bim_R_2", 3.0, -6.0, 12.0),
                                                           **iv("adv_adaptive_bim_I_3", *_NAN3)},
                                     SKIP=iv("adv_adaptive_bim_R_2", *_NAN3)))
C_UNBOUNDED = Claim("obfuscation check: an unbounded attack (APGD-CE at L_inf radius 1) reaches 0 % on every model",
                    _unbounded, presets=("default", "paper"), source="Athalye et al. 2018, sec. 3",
                    fixtures=Fixtures(PASS=_UNBOUNDED, FAIL={"ad_unbounded_fR_AR": 8.3, "ad_unbounded_fI": NAN},
                                      SKIP={"ad_unbounded_fR_AR": NAN}))
C_AD_ITER = Claim(f"obfuscation check: iterative APGD-CE at least as strong as single-step FGSM at each FGSM budget "
                  f"({L['tol']})", _ad_iterative, presets=("default", "paper"), source="Athalye et al. 2018, sec. 3",
                  fixtures=Fixtures(PASS=_AD_ITER, FAIL=iv("ad_iter_vs_fgsm_fR_AR_3", 6.0, 2.5, 9.5),
                                    SKIP=iv("ad_iter_vs_fgsm_fR_AR_3", *_NAN3)))
C_AD_WB = Claim(f"obfuscation check: white-box APGD-CE at least as strong as black-box Square and as transfer from "
                f"f_i, at cfg.check_eps ({L['tol']})", _ad_whitebox, presets=("default", "paper"),
                source="Athalye et al. 2018, sec. 3",
                fixtures=Fixtures(PASS=_AD_WB, FAIL=iv("ad_wb_vs_transfer_fI_AI", 12.0, 4.0, 20.0),
                                  SKIP=iv("ad_wb_vs_square_fR", *_NAN3)))
C_AD_MONO = Claim("obfuscation check: adaptive robust accuracy non-increasing in the budget (APGD-CE, each budget "
                  "attacked afresh; no rise whose upper bound reaches cfg.tol)", _ad_monotone,
                  presets=("default", "paper"), source="Athalye et al. 2018, sec. 3",
                  fixtures=Fixtures(PASS=_AD_RISE, FAIL={"ad_rise_Linf_fR_AR": 8.3, "ad_rise_Linf_fR_AR_hi": 20.8},
                                    SKIP={"ad_rise_Linf_fR_AR": NAN, "ad_rise_Linf_fR_AR_hi": NAN}))
C_AD_AA = Claim(f"100-iteration APGD-CE alone explains what AutoAttack finds: its later stages (APGD-T, FAB-T, "
                f"Square) break no more images at any budget ({L['tol']})", _ad_apgd_explains,
                presets=("default", "paper"), source="issue 23 (the README's gradient-masking reading)",
                fixtures=Fixtures(PASS=_AD_AA, FAIL={"ad_aa_extra_Linf_fI_AI": 12.5, "ad_aa_extra_Linf_fI_AI_hi": 25.0},
                                  SKIP={"ad_aa_extra_Linf_fI_AI_hi": NAN}))

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
     f"{S}, Fig 6.5", (C_BPDA, C_BPDA_NEAR))
_reg("tab6_1", "table_6_1", "Pairwise SSIM of input-gradient magnitudes (Tab 6.1) and Fig 6.6", f"{S}, Tab 6.1, "
     "Fig 6.6", (C_SSIM, C_SSIM_CLOSER), REPORTED_61)
_reg("adaptive", "adaptive", "Beyond the thesis: robustness curves at the thesis' budgets under APGD-CE / -DLR, "
     "AutoAttack standard and PGD with restarts through the whole StSNet, with Athalye et al.'s obfuscation checks",
     "extension (issues 15, 23; Athalye et al. 2018, Croce & Hein 2020, Tramer et al. 2020)",
     (C_SURVIVES, C_UNBOUNDED, C_AD_ITER, C_AD_WB, C_AD_MONO, C_AD_AA))
