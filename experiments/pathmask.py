"""Document 003, ch. 4-5 and app. B-C: VAE semantic morphing and path-mask attribution (JAX/Flax).

One config for every experiment (pathmask.config.PathMaskConfig): the CNN and the VAE are trained
once per seed and shared through identical work folders. Science in pathmask/.
"""
from __future__ import annotations

import math

from common.claims import Claim, Fixtures, interval_above, interval_below, interval_metrics as iv
from common.registry import Experiment, register
from pathmask.config import PRESETS, PathMaskConfig

S = "003 ch. 4-5"

MNIST = "MNIST (thesis: 100 test samples for the error rate)"


def _error_rate_near(m, cfg):
    """The Wilson 95 % interval of our error rate lies inside 0.03 +- cfg.error_rate_tol (0.03 is the
    thesis' MNIST rate over 100 samples, itself +- about 0.034 by its own Wilson interval)."""
    ref, tol = 0.03, cfg.error_rate_tol
    lo, hi = m["error_rate_lo"], m["error_rate_hi"]
    if math.isnan(lo) or math.isnan(hi):
        return None, f"no error rate (morphing ran on {m['samples']} samples)"
    return (ref - tol < lo and hi < ref + tol), (f"error rate {m['error_rate']:.3f}, Wilson 95% [{lo:.3f}, {hi:.3f}] "
                                                 f"over {m['samples']} samples, inside ({ref - tol:.3f}, {ref + tol:.3f})")


def _radial_stays(m, cfg=None):
    ok, detail = interval_above(m["outside_diff_lo"], 0.0, "95% bootstrap interval of (linear - radial) fraction of "
                                                          "path steps outside the training norm range", "")
    return ok, (f"linear {m['linear_outside']:.3f} vs radial {m['radial_outside']:.3f} of steps outside "
                f"[{m['train_norm_lo']:.2f}, {m['train_norm_hi']:.2f}]; {detail}")


R_MIN, R_PAIRS = 0.3, 100      # the document's finding, checked as stated: r > 0.3 over >= 100 pairs


def _r_above(m, cfg=None):
    ok, detail = interval_above(m["r_pooled_lo"], R_MIN, "95% bootstrap interval (over pairs) of the pooled Pearson r", "")
    if ok is not None and m["pairs"] < R_PAIRS:     # the finding is stated over >= 100 pairs: fewer do not show it
        ok, detail = False, f"only {m['pairs']} pairs (the finding needs >= {R_PAIRS}); {detail}"
    return ok, f"r = {m['r_pooled']:.3f} [{m['r_pooled_lo']:.3f}, {m['r_pooled_hi']:.3f}] over {m['pairs']} pairs; {detail}"


def _grad_window(m, cfg=None):
    ok, detail = interval_above(m["grad_window_log_ratio_lo"], 0.0, "95% bootstrap interval (over pairs) of "
                                "log(mean gradient inside the entropy window / outside)", "")
    return ok, f"{m['grad_window_pairs']} pairs with steps inside and outside; {detail}"


def _label_change(m, cfg=None):
    a, da = interval_above(m["mean_code_label_changed_lo"], 0.0, "Wilson 95% interval of the rate at which the "
                           "mean code's decoding changes the CNN's label", "")
    b, db = interval_above(m["label_change_drop_lo"], 0.0, "95% paired bootstrap interval of (mean-code rate - "
                           "best-embedding rate)", "")
    if a is None or b is None:
        return None, f"{da}; {db}"
    return (a and b), (f"mean code {m['mean_code_label_changed']:.3f}, best embedding "
                       f"{m['best_code_label_changed']:.3f}; {da}; {db}")


STOP_FRACTION = 0.25   # "well below the cap": the median stop step under a quarter of it


def _stops_early(m, cfg=None):
    return interval_below(m["steps_median_hi"], STOP_FRACTION * m["max_steps"],
                          "95% bootstrap interval of the median stop step (stopped samples)",
                          f"{STOP_FRACTION} x the cap of {m['max_steps']} =")


def _morph_nearer(m, cfg=None):
    ok, detail = interval_above(m["morph_nearer_lo"], 0.5, "Wilson 95% interval of the share of morphs whose code "
                                "is nearer the input's code than the nearest training code of the other class", "")
    return ok, f"median distance ratio (morph / nearest other) {m['morph_distance_ratio_median']:.3f}; {detail}"


def _gain_and_loss(m, cfg=None):
    a, da = interval_above(m["gain_mean_lo"], 0.0, "95% bootstrap interval (over inputs) of the sum of gains", "")
    b, db = interval_above(m["loss_drop_lo"], 0.0, "95% bootstrap interval of (first - last loss)", "")
    if a is False or b is False:     # a failed part fails the claim, whatever the other part says
        return False, f"{da}; {db}"
    return (None if a is None or b is None else True), f"{da}; {db}"


def _gains_at_entropy(m, cfg=None):
    ok, detail = interval_above(m["gain_window_excess_lo"], 0.0, "95% bootstrap interval (over inputs) of the share "
                                "of the gains in the entropy window minus the share of steps there", "")
    return ok, f"{m['gain_window_inputs']} inputs; {detail}"


def _right_skewed(m, cfg=None):
    ok, detail = interval_above(m["norm_skew_lo"], 0.0, "95% bootstrap interval of the skewness of code norms", "")
    return ok, f"skewness {m['norm_skew']:.3f} [{m['norm_skew_lo']:.3f}, {m['norm_skew_hi']:.3f}]; {detail}"


# --- fixtures: hand-made metrics for PASS / FAIL / SKIP (the default run's magnitudes on mnist5k) ------
NAN = float("nan")
_NAN3 = (NAN, NAN, NAN)


def _reg(name, target, title, source, reported=None, claims=()):
    register(Experiment(name=f"pathmask.{name}", target=f"pathmask.figures:{target}", config=PathMaskConfig,
                        presets=PRESETS, title=title, source=source, reported=reported or {}, reported_on=MNIST,
                        claims=claims))


_reg("reconstructions", "reconstructions", "VAE reconstructions and the best embedding; model accuracies (ours)",
     f"{S}, Fig 4.1, 5.1, app. C",
     claims=(Claim("the mean code's reconstruction sometimes changes the CNN's label, and the best-embedding search "
                   "lowers that rate", _label_change, presets=("default", "paper"), source="003 5.1 (Fig 5.1, 8 -> 7)",
                   fixtures=Fixtures(PASS={"best_code_label_changed": 0.0, **iv("mean_code_label_changed", 0.05, 0.034, 0.073),
                                           **iv("label_change_drop", 0.05, 0.032, 0.07)},
                                     FAIL={"best_code_label_changed": 0.05, **iv("label_change_drop", 0.0, -0.01, 0.01)},
                                     SKIP=iv("mean_code_label_changed", *_NAN3))),))
_reg("norms", "norms", "Code norm histograms, overall and per class; c_o", f"{S}, Fig 4.2, 4.3",
     claims=(Claim("the distribution of code norms is right-skewed", _right_skewed, presets=("default", "paper"),
                   source="003 L1333-1334",
                   fixtures=Fixtures(PASS=iv("norm_skew", 0.62, 0.48, 0.77), FAIL=iv("norm_skew", -0.05, -0.18, 0.08),
                                     SKIP=iv("norm_skew", *_NAN3))),))
_reg("interpolation", "interpolation", "Nearest pairs by cosine, norm along linear vs radial interpolation, a path",
     f"{S}, Fig 4.4-4.6",
     claims=(Claim("radial interpolation keeps the norm within the training range where linear leaves it",
                   _radial_stays, presets=("default", "paper"), source="003 L1415-1431, Fig 4.5",
                   fixtures=Fixtures(PASS={"linear_outside": 0.11, "radial_outside": 0.04, "train_norm_lo": 2.31,
                                           "train_norm_hi": 6.87, **iv("outside_diff", 0.07, 0.04, 0.10)},
                                     FAIL={"radial_outside": 0.12, **iv("outside_diff", -0.01, -0.03, 0.01)},
                                     SKIP=iv("outside_diff", *_NAN3))),))
_reg("entropy_gradient", "entropy_gradient", "Two-class entropy vs gradient magnitude along paths",
     f"{S}, 4.4, Fig 4.7, 4.8", reported={"r_example": 0.663, "r_pooled": 0.593},
     claims=(Claim(f"gradient magnitude correlates with the two-class entropy along paths: r > {R_MIN} over "
                   f">= {R_PAIRS} pairs", _r_above,
                   presets=("default", "paper"), source="003 L1490-1505",
                   fixtures=Fixtures(PASS={"pairs": 200, **iv("r_pooled", 0.50, 0.40, 0.60)},
                                     FAIL=iv("r_pooled", 0.32, 0.22, 0.42),
                                     SKIP=iv("r_pooled", *_NAN3))),
             Claim("gradient magnitude is larger inside the entropy window (mean step +- 1.96 weighted std) than "
                   "outside it", _grad_window, presets=("default", "paper"), source="003 L1478-1488, Fig 4.7",
                   fixtures=Fixtures(PASS={"grad_window_pairs": 150, **iv("grad_window_log_ratio", 0.9, 0.8, 1.0)},
                                     FAIL=iv("grad_window_log_ratio", 0.02, -0.1, 0.14),
                                     SKIP=iv("grad_window_log_ratio", *_NAN3)))))
_reg("morphing", "morphing", "Semantic morphing: error rate, loss terms, pairs", f"{S}, 4.5, Fig 4.9, 5.2",
     reported={"error_rate": {"value": 0.03, "note": "MNIST, 100 samples; NotMNIST 0.02, FashionMNIST 0.19 "
                                                     "(L1750, L1823, L1904)"}},
     claims=(Claim("morphing rarely fails: error rate near the thesis' 0.03 (interval within 0.03 +- tol)",
                   _error_rate_near, presets=("default", "paper"), source="003 L1747-1752",
                   fixtures=Fixtures(PASS={"samples": 300, **iv("error_rate", 0.04, 0.02, 0.07)},
                                     FAIL=iv("error_rate", 0.17, 0.13, 0.21),
                                     SKIP=iv("error_rate", *_NAN3))),
             Claim(f"the stopping rule fires well before the cap (median stop step < {STOP_FRACTION} x cap)",
                   _stops_early, presets=("default", "paper"), source="003 L1600 (< 350 of 5000 steps)",
                   fixtures=Fixtures(PASS={"max_steps": 2000, **iv("steps_median", 60.0, 55.0, 66.0)},
                                     FAIL=iv("steps_median", 1500.0, 1200.0, 1800.0),
                                     SKIP=iv("steps_median", *_NAN3))),
             Claim("early stopping keeps the morph nearer its input than the nearest other-class code", _morph_nearer,
                   presets=("default", "paper"), source="003 L1567-1575",
                   fixtures=Fixtures(PASS={"morph_distance_ratio_median": 0.4, **iv("morph_nearer", 0.95, 0.92, 0.97)},
                                     FAIL={"morph_distance_ratio_median": 1.1, **iv("morph_nearer", 0.45, 0.39, 0.51)},
                                     SKIP=iv("morph_nearer", *_NAN3)))))
_reg("path_mask", "path_mask", "Path-mask attribution, incl. misclassified inputs", f"{S}, 4.6, Fig 4.12, 5.3, 5.5",
     claims=(Claim("path-mask's optimised gain of p_self is positive and its loss falls", _gain_and_loss,
                   presets=("default", "paper"), source="003 L1640-1650, Fig 4.12 (loss plot)",
                   fixtures=Fixtures(PASS={**iv("gain_mean", 0.9, 0.6, 1.2), **iv("loss_drop", 0.8, 0.5, 1.1)},
                                     FAIL=iv("loss_drop", -0.1, -0.3, 0.1),
                                     SKIP=iv("gain_mean", *_NAN3))),
             Claim("path-mask's gains are concentrated at the high-entropy steps of the path", _gains_at_entropy,
                   presets=("default", "paper"), source="003 L1510-1512, Fig 4.12 (gains plot)",
                   fixtures=Fixtures(PASS={"gain_window_inputs": 8, **iv("gain_window_excess", 0.3, 0.2, 0.4)},
                                     FAIL=iv("gain_window_excess", 0.0, -0.1, 0.1),
                                     SKIP=iv("gain_window_excess", *_NAN3)))))
_reg("beyond_saliency", "beyond_saliency", "Beyond the document: path-mask against Saliency, IG, Occlusion, the CAMs, "
     "|input - morph| "
     "(AD/AI/AG, insertion, deletion, contrastive drop)", f"{S} 4.6 (the comparison is ours)",
     claims=(Claim("path-mask's top pixels, moved to the morph, lower p_self - p_other more than random pixels",
                   lambda m, cfg=None: interval_above(m["contrast_pathmask_lo"] - m["contrast_random_hi"], 0.0,
                                                      "path-mask's 95% CI lower end minus random's upper end", ""),
                   presets=("default", "paper"), source="ours",
                   fixtures=Fixtures(PASS={**iv("contrast_pathmask", 0.31, 0.24, 0.38), **iv("contrast_random", 0.05, 0.01, 0.09)},
                                     FAIL=iv("contrast_pathmask", 0.07, 0.02, 0.12),
                                     SKIP=iv("contrast_pathmask", *_NAN3))),))
